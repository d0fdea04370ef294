"""The pipeline's other paths end to end, a real worker over HTTP on a tiny model built in code:
labelers write demonstrations, an SFT run fine-tunes on them; labelers rank, a DPO run trains on the
comparisons. Each new policy is registered with its figures and generates for the project."""

import json

import pytest

pytest.importorskip("torch", reason="the trainer extras (torch, transformers) are not installed")

from tests.conftest import create_project
from tests.trainer.conftest import save_tiny_model
from trainer.client import ApiClient
from trainer.worker import Worker

QUESTIONS = [
    "what is the capital of france",
    "how do i reverse a list in python",
    "why is the sky blue",
    "write a short poem about the sea",
    "tell me a joke",
    "what is the sea",
    "why is the cat blue",
    "tell me a short poem",
]
SEA, CAT = "the waves roll over the sand", "a cat sat on a mat"


def imported_policy(client, admin, tmp_path) -> int:
    """A tiny causal LM registered from outside (tmp_path is inside the test settings' model dirs)."""
    path = save_tiny_model(tmp_path / "tiny-start")
    body = {"kind": "policy", "path": str(path), "name": "tiny start"}
    response = client.post("/api/v1/models/import", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def upload(client, admin, project_id: int, lines: list[dict]) -> None:
    body = "".join(json.dumps(line) + "\n" for line in lines).encode()
    headers = {**admin.headers, "Content-Type": "application/x-ndjson"}
    assert (
        client.post(f"/api/v1/projects/{project_id}/prompts", content=body, headers=headers).status_code
        == 201
    )


def run_worker(live_server, worker_account, tmp_path, kinds: list[str]) -> None:
    worker = Worker(
        ApiClient(live_server, worker_account.token),
        name="e2e",
        kinds=kinds,
        data_dir=tmp_path / "worker-data",
        poll_seconds=0.1,
    )
    worker.run(once=True)


def series(client, admin, job_id: int, key: str) -> list[float]:
    events = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"]
    return [e["metrics"][key] for e in events if key in e["metrics"]]


def test_demonstrations_then_an_sft_run_registers_a_policy_that_generates(
    client, admin, make_account, live_server, tmp_path
) -> None:
    start_id = imported_policy(client, admin, tmp_path)
    project = create_project(
        client,
        admin,
        name="answers",
        task="demonstrate",
        rankings_per_prompt=1,
        generation={"model": start_id, "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 6},
    )
    pid = project["id"]
    assert_refused = client.post(f"/api/v1/projects/{pid}/train/sft", json={}, headers=admin.headers)
    assert assert_refused.status_code == 422 and assert_refused.json()["error"]["code"] == "no_demonstrations"
    upload(client, admin, pid, [{"prompt": q} for q in QUESTIONS])
    labeler = make_account("labeler")
    for _ in QUESTIONS:
        task = client.get("/api/v1/tasks/next", params={"project_id": pid}, headers=labeler.headers).json()
        answer = (
            SEA if "sea" in task["prompt"]["messages"][0]["content"] else "paris is the capital of france"
        )
        written = client.post(
            f"/api/v1/assignments/{task['assignment_id']}/demonstration",
            json={"text": answer},
            headers=labeler.headers,
        )
        assert written.status_code == 201, written.text

    run = {"base_model": start_id, "epochs": 6, "learning_rate": 3e-3, "batch_size": 3, "eval_fraction": 0.25}
    queued = client.post(f"/api/v1/projects/{pid}/train/sft", json=run, headers=admin.headers)
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["job_id"]
    run_worker(live_server, make_account("worker"), tmp_path, ["sft", "generate"])

    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "succeeded", job["error"]
    assert len(job["config"]["eval_prompt_ids"]) == 2
    # how the project samples: written into the new policy's generation_config.json (trainer/model_files.py)
    generation = client.get(f"/api/v1/projects/{pid}", headers=admin.headers).json()["generation"]
    assert (job["config"]["temperature"], job["config"]["top_p"]) == (
        generation["temperature"],
        generation["top_p"],
    )
    train = series(client, admin, job_id, "loss/train")
    held_out = series(client, admin, job_id, "loss/eval")
    assert train[-1] < train[0] and len(held_out) == 1 + 6
    model = client.get(f"/api/v1/models/{job['model_id']}", headers=admin.headers).json()
    assert model["kind"] == "policy" and model["base_model"] == f"model:{start_id}"
    assert model["metrics"]["data/eval_demonstrations"] == 2
    page = client.get(f"/jobs/{job_id}", headers=admin.headers)
    assert "Loss on the answers" in page.text

    # the project generates with it
    client.patch(
        f"/api/v1/projects/{pid}", json={"generation": {"model": model["id"]}}, headers=admin.headers
    )
    upload(client, admin, pid, [{"prompt": "tell me a joke about the sea"}])
    generate = client.post(f"/api/v1/projects/{pid}/generate", headers=admin.headers).json()["job_id"]
    run_worker(live_server, make_account("worker"), tmp_path, ["sft", "generate"])
    assert client.get(f"/api/v1/jobs/{generate}", headers=admin.headers).json()["status"] == "succeeded"


def test_rankings_then_a_dpo_run_registers_a_policy_with_its_held_out_accuracy_and_kl(
    client, admin, make_account, live_server, tmp_path
) -> None:
    start_id = imported_policy(client, admin, tmp_path)
    project = create_project(client, admin, completions_per_prompt=2, rankings_per_prompt=1)
    pid = project["id"]
    assert_refused = client.post(f"/api/v1/projects/{pid}/train/dpo", json={}, headers=admin.headers)
    assert assert_refused.json()["error"]["code"] == "no_comparisons"
    upload(client, admin, pid, [{"prompt": q, "completions": [CAT, SEA]} for q in QUESTIONS])
    labeler = make_account("labeler")
    for _ in QUESTIONS:
        task = client.get("/api/v1/tasks/next", params={"project_id": pid}, headers=labeler.headers).json()
        by_text = {c["text"]: c["id"] for c in task["completions"]}
        ranked = client.post(
            f"/api/v1/assignments/{task['assignment_id']}/ranking",
            json={"ranking": [[by_text[SEA]], [by_text[CAT]]]},
            headers=labeler.headers,
        )
        assert ranked.status_code == 201, ranked.text

    run = {
        "policy": start_id,
        "beta": 0.5,
        "epochs": 6,
        "learning_rate": 2e-3,
        "batch_size": 3,
        "eval_fraction": 0.25,
        "kl_samples": 4,
        "max_new_tokens": 6,
        "force": True,  # tiny data on purpose: the data-size gate is tested in tests/runs
    }
    queued = client.post(f"/api/v1/projects/{pid}/train/dpo", json=run, headers=admin.headers)
    assert queued.status_code == 202, queued.text
    job_id = queued.json()["job_id"]
    run_worker(live_server, make_account("worker"), tmp_path, ["dpo"])

    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "succeeded", job["error"]
    losses = series(client, admin, job_id, "loss/train")
    assert losses[-1] < losses[0]
    model = client.get(f"/api/v1/models/{job['model_id']}", headers=admin.headers).json()
    assert model["kind"] == "policy" and model["base_model"] == f"model:{start_id}"
    assert model["metrics"]["accuracy/eval"] == 1.0 and model["metrics"]["eval/pairs"] == 2
    assert model["metrics"]["eval/kl"] > 0
    assert model["held_out"].startswith("1.000")
    page = client.get(f"/jobs/{job_id}", headers=admin.headers)
    assert "Preference accuracy" in page.text and "Implicit reward margin" in page.text
