"""Training runs over the API: queueing a reward run, and a finished run registering its model."""

from tests.conftest import create_project
from tests.helpers import assert_error

CLAIM = {"kinds": ["reward"], "worker": "gpu-1"}


def test_reward_run_registers_a_model_version(client, admin, make_account) -> None:
    project = create_project(client, admin)
    body = {
        "epochs": 2,
        "learning_rate": 3e-5,
        "filters": {"exclude_flags": ["unsafe"], "min_agreement": 0.2},
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
