"""The loop closed end to end: a real worker runs a PPO job over HTTP on tiny models built in code, the
new policy is registered and loads with plain transformers, the project switches to it, and the next
generate job writes completions with it."""

import json
import shutil

import pytest

pytest.importorskip("torch", reason="the trainer extras (torch, transformers) are not installed")

from tests.conftest import create_project
from tests.helpers import finish_training_job
from tests.labeling.conftest import seed_ready_prompts
from tests.trainer.conftest import save_tiny_model, save_tiny_reward_model
from trainer.client import ApiClient
from trainer.worker import Worker


def _registered_models(client, admin, worker_account, tmp_path, artifacts) -> tuple[dict, int, int, object]:
    """A project with prompts, and a tiny reward model and a tiny starting policy registered as versions
    (put in the artifact store by hand, as a worker would)."""
    project = create_project(
        client,
        admin,
        completions_per_prompt=2,
        rankings_per_prompt=1,
        generation={"model": "default", "temperature": 1.0, "top_p": 1.0, "max_new_tokens": 8},
    )
    pid = project["id"]
    seed_ready_prompts(client, admin, pid, n=8, k=2)
    forced = {"force": True}  # a reward model put in the store by hand: the data is not under test
    reward_job = client.post(
        f"/api/v1/projects/{pid}/train/reward", json=forced, headers=admin.headers
    ).json()
    shutil.copytree(save_tiny_reward_model(tmp_path / "rm"), artifacts / f"reward/job-{reward_job['job_id']}")
    reward_id = finish_training_job(client, worker_account, "reward", reward_job["job_id"])["model_id"]
    seed_job = client.post(
        f"/api/v1/projects/{pid}/train/ppo",
        json={"reward_model": reward_id, "force": True},  # a random tiny RM, not shown better than chance
        headers=admin.headers,
    ).json()
    start_dir = save_tiny_model(artifacts / f"ppo/job-{seed_job['job_id']}")
    start_id = finish_training_job(client, worker_account, "ppo", seed_job["job_id"])["model_id"]
    return project, reward_id, start_id, start_dir


def test_ppo_run_then_generate_with_the_new_policy(
    client, admin, make_account, live_server, tmp_path
) -> None:
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    worker_account = make_account("worker")
    artifacts = tmp_path / "worker-data" / "artifacts"  # the store the server and the worker share
    project, reward_id, start_id, start_dir = _registered_models(
        client, admin, worker_account, tmp_path, artifacts
    )
    pid = project["id"]
    run = {
        "reward_model": reward_id,
        "policy": start_id,
        "steps": 3,
        "batch_size": 4,
        "minibatch_size": 2,
        "ppo_epochs": 2,
        "max_new_tokens": 6,
        "learning_rate": 1e-3,
        "eval_prompts": 2,
        "sample_every": 1,
        "force": True,  # the tiny RM is random: not shown better than chance
    }
    job_id = client.post(f"/api/v1/projects/{pid}/train/ppo", json=run, headers=admin.headers).json()[
        "job_id"
    ]
    worker = Worker(
        ApiClient(live_server, worker_account.token),
        name="e2e",
        kinds=["ppo", "generate"],
        data_dir=tmp_path / "worker-data",
        poll_seconds=0.1,
    )
    worker.run(once=True)

    job = client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()
    assert job["status"] == "succeeded", job["error"]
    assert job["metrics"]["step"] == 3 and job["metrics"]["stop_reason"] == "steps"
    model = client.get(f"/api/v1/models/{job['model_id']}", headers=admin.headers).json()
    assert model["kind"] == "policy" and model["base_model"] == f"model:{start_id}"
    for key in ("eval/reward_before", "eval/reward_after", "eval/kl_after", "reward/score", "objective/kl"):
        assert isinstance(model["metrics"][key], float), key
    series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"]
    assert [e["metrics"]["step"] for e in series if "reward/score" in e["metrics"]] == [1, 2, 3]
    assert any(e["metrics"].get("samples") for e in series)
    page = client.get(f"/jobs/{job_id}", headers=admin.headers)
    assert "Samples at step" in page.text and "KL to the reference" in page.text

    # The new policy loads with plain transformers, and its weights moved away from the start.
    new_dir = artifacts / model["artifact"]
    sampling = AutoModelForCausalLM.from_pretrained(new_dir).generation_config
    assert sampling.do_sample and sampling.temperature == job["config"]["temperature"]
    lineage = json.loads((new_dir / "preflab.json").read_text())["lineage"]
    assert {"role": "reward", "model": f"model:{reward_id}"}.items() <= lineage[-1].items()
    before, after = load_file(start_dir / "model.safetensors"), load_file(new_dir / "model.safetensors")
    assert any(not torch.equal(before[name], after[name]) for name in before)

    # Close the loop: the project generates with the new version; its completions say so.
    client.patch(
        f"/api/v1/projects/{pid}", json={"generation": {"model": model["id"]}}, headers=admin.headers
    )
    headers = {**admin.headers, "Content-Type": "application/x-ndjson"}
    client.post(f"/api/v1/projects/{pid}/prompts", content=b'{"prompt": "round two"}\n', headers=headers)
    generate = client.post(f"/api/v1/projects/{pid}/generate", headers=admin.headers).json()["job_id"]
    worker.run(once=True)
    assert client.get(f"/api/v1/jobs/{generate}", headers=admin.headers).json()["status"] == "succeeded"
    listed = client.get(f"/api/v1/projects/{pid}/prompts", params={"limit": 100}, headers=admin.headers)
    (fresh,) = [p for p in listed.json()["items"] if p["messages"][-1]["content"] == "round two"]
    assert [c["model"] for c in fresh["completions"]] == [f"model:{model['id']}"] * 2


def test_stopped_ppo_worker_hands_back_the_next_resumes_and_cancel_stops_it(
    client, admin, make_account, live_server, tmp_path
) -> None:
    import threading
    import time

    worker_account = make_account("worker")
    data_dir = tmp_path / "shared-data"  # both workers see the same artifact store
    project, reward_id, start_id, _ = _registered_models(
        client, admin, worker_account, tmp_path, data_dir / "artifacts"
    )
    run = {
        "reward_model": reward_id,
        "policy": start_id,
        "steps": 500,
        "batch_size": 2,
        "minibatch_size": 2,
        "ppo_epochs": 1,
        "max_new_tokens": 4,
        "eval_prompts": 0,
        "checkpoint_every": 1000,  # only the stop itself saves a checkpoint
        "force": True,  # the tiny RM is random: not shown better than chance
    }
    job_id = client.post(
        f"/api/v1/projects/{project['id']}/train/ppo", json=run, headers=admin.headers
    ).json()["job_id"]

    def steps() -> list[int]:
        series = client.get(f"/api/v1/jobs/{job_id}/metrics", headers=admin.headers).json()["items"]
        return [e["metrics"]["step"] for e in series if "reward/score" in e["metrics"]]

    def start(name: str) -> tuple[Worker, threading.Thread]:
        worker = Worker(
            ApiClient(live_server, worker_account.token),
            name=name,
            kinds=["ppo"],
            data_dir=data_dir,
            poll_seconds=0.1,
        )
        thread = threading.Thread(target=worker.run, kwargs={"once": True}, daemon=True)
        thread.start()
        return worker, thread

    def wait_for(predicate, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            time.sleep(0.1)

    first, thread = start("first")
    wait_for(lambda: len(steps()) >= 2)
    first.stopping.set()  # what SIGTERM does
    thread.join(timeout=60)
    assert client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()["status"] == "queued"
    stopped_at = max(steps())

    _, thread = start("second")
    wait_for(lambda: max(steps()) > stopped_at)
    resumed = steps()[steps().index(stopped_at) + 1 :]
    assert resumed[0] == stopped_at + 1, f"resumed from its checkpoint, not from step 0: {steps()}"
    cancelled_at = time.monotonic()
    assert client.post(f"/api/v1/jobs/{job_id}/cancel", headers=admin.headers).json()["status"] == "cancelled"
    thread.join(timeout=30)
    assert not thread.is_alive() and time.monotonic() - cancelled_at < 15
    assert client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()["status"] == "cancelled"
