"""A reward run end to end: rankings in the database, a real worker over HTTP, a real (tiny) model
trained, the model registered, saved in Hugging Face format, loadable with plain transformers."""

import json

import pytest

pytest.importorskip("torch", reason="the trainer extras (torch, transformers) are not installed")

from tests.conftest import create_project
from tests.labeling.conftest import seed_ready_prompts
from tests.trainer.conftest import save_tiny_bert
from trainer.client import ApiClient
from trainer.worker import Worker


def test_reward_run_trains_and_registers(client, admin, make_account, live_server, tmp_path) -> None:
    from transformers import AutoModelForSequenceClassification

    project = _labeled_project(client, admin, make_account, n=12)
    job_id = _start(client, admin, project, save_tiny_bert(tmp_path / "tiny-bert"), epochs=2)
    data_dir = tmp_path / "worker-data"
    worker = Worker(
        ApiClient(live_server, make_account("worker").token),
        name="e2e",
        kinds=["reward"],
        data_dir=data_dir,
        poll_seconds=0.1,
    )
    worker.run(once=True)

    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "succeeded", job["error"]
    model = client.get(f"/api/v1/models/{job['model_id']}", headers=admin.headers).json()
    assert model["kind"] == "reward" and model["artifact"] == f"reward/job-{job_id}"
    assert "accuracy/eval" in model["metrics"] and "loss/train" in model["metrics"]
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"]
    assert any("loss/train" in e["metrics"] for e in series)
    saved = data_dir / "artifacts" / model["artifact"]
    assert (saved / "preflab.json").is_file() and (saved / "model.safetensors").is_file()
    AutoModelForSequenceClassification.from_pretrained(saved)  # plain transformers loads it
    # the worker finished the directory: a card, a portable record, a template for TRL
    record = json.loads((saved / "preflab.json").read_text())
    assert record["job"] == {"id": job_id, "project_id": project["id"]}
    assert record["backbone_dir"].startswith("local:"), "a name, not this machine's path"
    card = (saved / "README.md").read_text()
    assert f"PrefLab job {job_id}" in card and "95% interval" in card
    assert (saved / "chat_template.jinja").is_file()


def _labeled_project(client, admin, make_account, n: int = 40) -> dict:
    """A project whose n prompts (K=3) were each ranked once, alphabetical order best."""
    project = create_project(client, admin, completions_per_prompt=3, rankings_per_prompt=1)
    seed_ready_prompts(client, admin, project["id"], n=n, k=3)
    labeler = make_account("labeler")
    while (
        task := client.get(
            "/api/v1/tasks/next", params={"project_id": project["id"]}, headers=labeler.headers
        )
    ).status_code == 200:
        ids = [c["id"] for c in sorted(task.json()["completions"], key=lambda c: c["text"])]
        client.post(
            f"/api/v1/assignments/{task.json()['assignment_id']}/ranking",
            json={"ranking": [[cid] for cid in ids]},
            headers=labeler.headers,
        )
    return project


def _start(client, admin, project, backbone, epochs: int) -> int:
    run = {
        "base_model": str(backbone),
        "epochs": epochs,
        "learning_rate": 1e-3,
        "max_length": 64,
        "batch_rankings": 2,
        "eval_fraction": 0.25,
        "force": True,  # tiny data on purpose: the data-size gate is tested in tests/runs
    }
    response = client.post(f"/api/v1/projects/{project['id']}/train/reward", json=run, headers=admin.headers)
    return response.json()["job_id"]


def _wait_for(predicate, seconds: float = 60) -> None:
    import time

    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _steps(client, admin, job_id: int) -> list[int]:
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"]
    return [e["metrics"]["step"] for e in series if "loss/train" in e["metrics"]]


def test_cancel_stops_training_within_seconds(client, admin, make_account, live_server, tmp_path) -> None:
    import threading
    import time

    project = _labeled_project(client, admin, make_account)
    job_id = _start(client, admin, project, save_tiny_bert(tmp_path / "bert"), epochs=50)
    worker = Worker(
        ApiClient(live_server, make_account("worker").token),
        name="w",
        kinds=["reward"],
        data_dir=tmp_path / "w",
        poll_seconds=0.1,
    )
    thread = threading.Thread(target=worker.run, kwargs={"once": True}, daemon=True)
    thread.start()
    _wait_for(lambda: _steps(client, admin, job_id))
    cancelled_at = time.monotonic()
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin.headers).json()["status"] == "cancelled"
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - cancelled_at < 15
    assert client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()["status"] == "cancelled"


def test_stopped_worker_hands_back_and_the_next_resumes(
    client, admin, make_account, live_server, tmp_path
) -> None:
    import threading

    project = _labeled_project(client, admin, make_account)
    job_id = _start(client, admin, project, save_tiny_bert(tmp_path / "bert"), epochs=40)
    data_dir = tmp_path / "shared-artifacts"  # both workers see the same artifact store
    first = Worker(
        ApiClient(live_server, make_account("worker").token),
        name="first",
        kinds=["reward"],
        data_dir=data_dir,
        poll_seconds=0.1,
    )
    thread = threading.Thread(target=first.run, kwargs={"once": True}, daemon=True)
    thread.start()
    _wait_for(lambda: _steps(client, admin, job_id))
    first.stopping.set()  # what SIGTERM does
    thread.join(timeout=60)
    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "queued", "a stopping worker hands its job back"
    stopped_at = max(_steps(client, admin, job_id))

    second = Worker(
        ApiClient(live_server, make_account("worker").token),
        name="second",
        kinds=["reward"],
        data_dir=data_dir,
        poll_seconds=0.1,
    )
    second.run(once=True)
    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "succeeded", job["error"]
    steps = _steps(client, admin, job_id)
    resumed = steps[steps.index(stopped_at) + 1 :]
    assert resumed and min(resumed) > stopped_at, f"resumed from its checkpoint, not from step 0: {steps}"
