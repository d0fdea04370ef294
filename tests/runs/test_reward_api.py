"""Training runs over the API: queueing a reward run, and a finished run registering its model."""

from tests.conftest import create_project
from tests.helpers import assert_error
from tests.labeling.conftest import seed_ready_prompts

CLAIM = {"kinds": ["reward"], "worker": "gpu-1"}


def test_reward_run_registers_a_model_version(client, admin, make_account) -> None:
    project = create_project(client, admin)
    body = {
        "epochs": 2,
        "learning_rate": 3e-5,
        "filters": {"exclude_flags": ["unsafe"], "min_agreement": 0.2},
        "force": True,  # no comparisons: only the queue and the registration are under test
    }
    queued = client.post(f"/api/v1/projects/{project['id']}/train/reward", json=body, headers=admin.headers)
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["job_id"]

    worker = make_account("worker")
    claimed = client.post("/api/v1/worker/claim", json=CLAIM, headers=worker.headers).json()
    assert claimed["id"] == job_id and claimed["kind"] == "reward"
    assert claimed["config"]["epochs"] == 2 and claimed["config"]["base_model"] == "default"
    assert claimed["config"]["filters"]["exclude_flags"] == ["unsafe"]
    assert claimed["config"]["filters"]["exclude_none_acceptable"] is True, "on unless turned off"
    event = {
        "attempt": claimed["attempts"],
        "progress": 0.5,
        "metrics": {"step": 10, "loss/train": 0.6, "accuracy/train": 0.7},
    }
    assert client.post(f"/api/v1/jobs/{job_id}/events", json=event, headers=worker.headers).status_code == 204

    bad = {"attempt": claimed["attempts"], "artifact": "../../etc", "metrics": {}}
    assert_error(client.post(f"/api/v1/jobs/{job_id}/complete", json=bad, headers=worker.headers), 422)
    assert client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()["status"] == "running"

    done = {
        "attempt": claimed["attempts"],
        "artifact": f"reward/job-{job_id}",
        "metrics": {"accuracy/eval": 0.71, "loss/eval": 0.58},
    }
    finished = client.post(f"/api/v1/jobs/{job_id}/complete", json=done, headers=worker.headers).json()
    assert finished["status"] == "succeeded" and finished["model_id"] is not None
    models = client.get("/api/v1/models", headers=admin.headers).json()["items"]
    assert len(models) == 1
    model = models[0]
    assert model["id"] == finished["model_id"] and model["kind"] == "reward" and model["job_id"] == job_id
    assert model["artifact"] == f"reward/job-{job_id}" and model["project_id"] == project["id"]
    assert model["metrics"]["accuracy/eval"] == 0.71 and model["metrics"]["loss/train"] == 0.6
    researcher = make_account("researcher")
    assert client.get(f"/api/v1/models/{model['id']}", headers=researcher.headers).json() == model
    assert (
        client.get("/api/v1/models", params={"kind": "policy"}, headers=admin.headers).json()["items"] == []
    )


def test_bad_training_requests_are_422(client, admin, make_account, tmp_path) -> None:
    project = create_project(client, admin)
    url = f"/api/v1/projects/{project['id']}/train/reward"
    for body, field in [
        ({"epochs": 0}, "epochs"),
        ({"learning_rate": 1}, "learning_rate"),
        ({"filters": {"exclude_flags": ["rude"]}}, "exclude_flags"),
        ({"base_model": str(tmp_path)}, "base_model"),
        ({"surprise": 1}, "surprise"),
    ]:
        error = assert_error(client.post(url, json=body, headers=admin.headers), 422)
        assert field in error["details"]["field"], (body, error)
    assert client.get(f"/api/v1/projects/{project['id']}/jobs", headers=admin.headers).json()["items"] == []
    assert_error(client.post(url, json={}, headers=make_account("researcher").headers), 403)
    assert_error(client.get("/api/v1/models", headers=make_account("labeler").headers), 403)
    assert_error(client.get("/api/v1/models/99", headers=admin.headers), 404, "model_not_found")


def ranked_project(client, admin, labeler, name: str, n: int) -> dict:
    """n prompts (K=3), each ranked once: 3n comparisons."""
    project = create_project(client, admin, name=name, completions_per_prompt=3, rankings_per_prompt=1)
    seed_ready_prompts(client, admin, project["id"], n=n, k=3)
    params = {"project_id": project["id"]}
    while (
        task := client.get("/api/v1/tasks/next", params=params, headers=labeler.headers)
    ).status_code == 200:
        ids = [[c["id"]] for c in task.json()["completions"]]
        url = f"/api/v1/assignments/{task.json()['assignment_id']}/ranking"
        assert client.post(url, json={"ranking": ids}, headers=labeler.headers).status_code == 201
    return project


def test_a_run_on_too_little_data_is_refused_before_queueing_unless_forced(
    client, admin, make_account
) -> None:
    empty = create_project(client, admin, name="empty")
    url = f"/api/v1/projects/{empty['id']}/train/reward"
    assert_error(client.post(url, json={}, headers=admin.headers), 422, "no_comparisons")

    labeler = make_account("labeler")
    small = ranked_project(client, admin, labeler, "small", n=12)  # 36 pairs: ~3 held out, 1 prompt
    url = f"/api/v1/projects/{small['id']}/train/reward"
    refused = client.post(url, json={}, headers=admin.headers)
    assert_error(refused, 409, "too_little_data")
    error = refused.json()["error"]
    assert "36 comparisons on 12 prompts" in error["message"] and error["details"]["held_out_pairs"] == 3
    assert client.get(f"/api/v1/projects/{small['id']}/jobs", headers=admin.headers).json()["items"] == []
    assert client.post(url, json={"force": True}, headers=admin.headers).status_code == 202
    dpo = client.post(f"/api/v1/projects/{small['id']}/train/dpo", json={}, headers=admin.headers)
    assert_error(dpo, 409, "too_little_data")

    enough = ranked_project(client, admin, labeler, "enough", n=60)  # 180 pairs: 6 prompts, 18 pairs held out
    assert_error(
        client.post(f"/api/v1/projects/{enough['id']}/train/reward", json={}, headers=admin.headers), 409
    )
    more = {"eval_fraction": 0.2}  # 12 prompts, 36 pairs
    queued = client.post(f"/api/v1/projects/{enough['id']}/train/reward", json=more, headers=admin.headers)
    assert queued.status_code == 202, queued.text
