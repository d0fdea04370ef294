"""The generate loop end to end: admin queues, a real worker claims over HTTP, a real (tiny) model
generates, completions land, labelers can rank. Also the worker's behaviour at the edges: server down,
SIGTERM."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("torch", reason="the trainer extras (torch, transformers) are not installed")

from tests.conftest import create_project
from tests.trainer.conftest import save_tiny_model
from trainer.client import ApiClient, ServerUnavailable
from trainer.worker import Worker


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("tiny-policy"))


def generate_once(
    client, admin, worker_account, live_server, tmp_path, prompts, *, k, generation, adapt=None
):
    """A project with these prompts and generation settings, one generate job, one worker pass over it.

    ``adapt(policy)`` may change the policy the worker loads. Returns (project, job id)."""
    project = create_project(
        client, admin, completions_per_prompt=k, rankings_per_prompt=1, generation=generation
    )
    body = "".join(json.dumps(p) + "\n" for p in prompts)
    client.post(
        f"/api/v1/projects/{project['id']}/prompts",
        content=body.encode(),
        headers={**admin.headers, "Content-Type": "application/x-ndjson"},
    )
    job_id = client.post(f"/api/v1/projects/{project['id']}/generate", headers=admin.headers).json()["job_id"]
    worker = Worker(
        ApiClient(live_server, worker_account.token),
        name="e2e",
        kinds=["generate"],
        data_dir=tmp_path,
        poll_seconds=0.1,
    )
    if adapt is not None:
        load_policy = worker.load_policy

        def load_adapted(spec, artifact=None):
            policy = load_policy(spec, artifact)
            adapt(policy)
            return policy

        worker.load_policy = load_adapted
    worker.run(once=True)
    return project, job_id


def test_generate_job_fills_every_prompt(
    client, admin, make_account, live_server, tiny_model, tmp_path
) -> None:
    prompts = [{"prompt": f"Tell me about number {i}"} for i in range(5)]
    prompts.append({"prompt": "Already has one", "completions": ["an imported answer"]})
    generation = {"model": str(tiny_model), "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12}
    project, job_id = generate_once(
        client, admin, make_account("worker"), live_server, tmp_path, prompts, k=3, generation=generation
    )

    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "succeeded", job
    assert job["metrics"]["generate/completions"] == 5 * 3 + 2
    items = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()["items"]
    assert all(p["status"] == "ready" and len(p["completions"]) == 3 for p in items)
    for prompt in items:
        texts = [c["text"].strip() for c in prompt["completions"]]
        assert len(set(texts)) == 3, "no twins"
    generated = items[0]["completions"][0]
    assert generated["origin"] == "generated" and generated["model"] == str(tiny_model)
    assert isinstance(generated["seed"], int)
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"]
    assert series and series[-1]["progress"] == 1.0

    labeler = make_account("labeler")
    task = client.get(
        "/api/v1/tasks/next", params={"project_id": project["id"]}, headers=labeler.headers
    ).json()
    assert len(task["completions"]) == 3


def test_generate_job_reports_progress_while_a_batch_decodes(
    client, admin, make_account, live_server, tiny_model, tmp_path, monkeypatch
) -> None:
    """One batch of many prompts used to sit at 0% until it was stored, then jump to 100%."""
    import trainer.generate_job

    monkeypatch.setattr(trainer.generate_job, "PROGRESS_SECONDS", 0.0)  # report every decoding step
    prompts = [{"prompt": f"Tell me about number {i}"} for i in range(6)]
    generation = {"model": str(tiny_model), "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 12}
    _, job_id = generate_once(
        client, admin, make_account("worker"), live_server, tmp_path, prompts, k=2, generation=generation
    )

    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"]
    progress = [point["progress"] for point in series]
    assert progress[0] == 0.0, "the first report comes before the model is loaded"
    assert [p for p in progress if 0.0 < p < 1.0], f"no report while the one batch decoded: {progress}"
    assert progress == sorted(progress), "progress never moves backwards"
    assert progress[-1] == 1.0


def repeat_itself_on(policy, word: str) -> None:
    """Make the policy deterministic on prompts that contain ``word``: those rows always say "paris"."""
    import torch
    from transformers import LogitsProcessor

    marker = policy.tokenizer.convert_tokens_to_ids(word)
    forced = policy.tokenizer.convert_tokens_to_ids("paris")
    real_generate = policy.model.generate

    class Force(LogitsProcessor):
        def __init__(self, rows: torch.Tensor) -> None:
            self.rows = rows

        def __call__(self, input_ids, scores):
            scores[self.rows] = float("-inf")
            scores[self.rows, forced] = 0.0
            return scores

    def generate(**kwargs):
        rows = (kwargs["input_ids"] == marker).any(dim=1)  # (R,) the prompt rows, left-padded
        kwargs["logits_processor"].append(Force(rows))  # after the sampler: overrides its draw
        return real_generate(**kwargs)

    policy.model.generate = generate


def test_a_prompt_the_model_repeats_itself_on_keeps_its_completions_and_spares_the_others(
    client, admin, make_account, live_server, tiny_model, tmp_path
) -> None:
    """It used to fail the whole job with DuplicateCompletionsError, taking every prompt down."""
    generation = {
        "model": str(tiny_model),
        "temperature": 1.0,
        "top_p": 1.0,
        "max_new_tokens": 8,
        "retry_temperature": 1.5,
    }
    prompts = [{"prompt": f"what is the capital of france number {i}"} for i in range(4)]
    prompts.insert(2, {"prompt": "tell me a joke"})
    project, job_id = generate_once(
        client,
        admin,
        make_account("worker"),
        live_server,
        tmp_path,
        prompts,
        k=3,
        generation=generation,
        adapt=lambda policy: repeat_itself_on(policy, "joke"),
    )

    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "succeeded", job
    assert job["metrics"]["generate/prompts_short"] == 1
    items = client.get(f"/api/v1/projects/{project['id']}/prompts", headers=admin.headers).json()["items"]
    by_text = {p["messages"][-1]["content"]: p for p in items}
    stuck = by_text.pop("tell me a joke")
    assert stuck["status"] == "pending"
    assert [c["text"] for c in stuck["completions"]] == [" ".join(["paris"] * 8)], "its one distinct text"
    assert all(p["status"] == "ready" and len(p["completions"]) == 3 for p in by_text.values())
    page = client.get(f"/projects/{project['id']}/jobs", headers=admin.headers)
    assert "prompts short of K" in page.text


def test_client_retries_then_gives_up_when_server_is_down() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again: nothing listens there
    sleeps: list[float] = []
    api = ApiClient(f"http://127.0.0.1:{port}", "token", retries=3, sleep=sleeps.append)
    with pytest.raises(ServerUnavailable):
        api.claim(["generate"], "w")
    assert sleeps == [0.5, 1.0, 2.0], "exponential back-off between tries"


def test_worker_waits_for_a_server_that_starts_later(
    app, admin, make_account, client, tmp_path, caplog
) -> None:
    import uvicorn

    caplog.set_level(logging.DEBUG, logger="preflab.worker")

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    project = create_project(client, admin)
    job_id = client.post(f"/api/v1/projects/{project['id']}/generate", headers=admin.headers).json()["job_id"]
    claimed: list[int] = []

    class RecordingWorker(Worker):
        def run_job(self, job) -> None:
            claimed.append(job.id)
            self.api.release(job)

    worker = RecordingWorker(
        ApiClient(f"http://127.0.0.1:{port}", make_account("worker").token),
        name="late",
        kinds=["generate"],
        data_dir=tmp_path,
        poll_seconds=0.05,
    )
    thread = threading.Thread(target=worker.run, kwargs={"once": True}, daemon=True)
    thread.start()
    time.sleep(0.5)  # the worker is failing to connect and backing off
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    server_thread = threading.Thread(target=server.run, daemon=True)
    server_thread.start()
    thread.join(timeout=30)
    server.should_exit = True
    server_thread.join(timeout=10)
    assert claimed == [job_id]
    waiting = [r for r in caplog.records if r.name == "preflab.worker" and "unavailable" in r.getMessage()]
    assert waiting, "the worker did try before the server was up"
    assert all(r.levelno < logging.INFO for r in waiting), "a server still starting is not an error"


def test_worker_process_stops_cleanly_on_sigterm(live_server, make_account, tmp_path) -> None:
    env = {**os.environ, "PREFLAB_WORKER_TOKEN": make_account("worker").token}
    process = subprocess.Popen(
        [sys.executable, "-m", "trainer.worker", "--server", live_server, "--data-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=20)
    assert process.returncode == 0, output
    assert "received SIGTERM" in output and "worker stopped" in output
