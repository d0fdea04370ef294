"""`preflab serve --with-worker` starts a worker beside the server, and never leaves it behind: stopped
with the server (SIGTERM) or orphaned by it (SIGKILL), the worker is gone within seconds, even in the
middle of a PPO step that takes minutes."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest

pytest.importorskip("torch", reason="the worker needs the trainer extras")

from tests.helpers import finish_training_job
from tests.labeling.conftest import seed_ready_prompts
from tests.trainer.conftest import save_tiny_model, save_tiny_reward_model

PREFLAB = [sys.executable, "-m", "app.cli"]
STOPPED_WITHIN_SECONDS = 20
"""Far below one step of the PPO run below (64 epochs of 64 single-completion minibatches: a minute and
more on these CPUs), which is how long a worker that only stops between steps would go on."""


def _environment(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "PREFLAB_DEV": "1", "PREFLAB_DATA_DIR": str(data_dir)}
    env.pop("PREFLAB_DATABASE_URL", None)
    return env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _serve(env: dict[str, str], port: int, *extra: str) -> subprocess.Popen:
    server = subprocess.Popen(
        [*PREFLAB, "serve", "--port", str(port), *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            time.sleep(0.2)
    server.kill()
    raise AssertionError(f"the server did not start: {server.communicate()[0]}")


def _token(env: dict[str, str], name: str, role: str) -> SimpleNamespace:
    created = subprocess.run(
        [*PREFLAB, "create-user", name, "--role", role, "--token"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return SimpleNamespace(headers={"Authorization": f"Bearer {created.stdout.strip().splitlines()[-1]}"})


def _workers_serving(port: int) -> list[int]:
    """Pids of worker processes pointed at this server (however they were started or reparented)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"trainer.worker" in command and f"http://127.0.0.1:{port}".encode() in command:
            pids.append(int(entry.name))
    return pids


def test_serve_with_worker_starts_and_stops_both(tmp_path: Path) -> None:
    env = _environment(tmp_path)
    subprocess.run([*PREFLAB, "migrate"], env=env, check=True, capture_output=True)
    port = _free_port()
    server = _serve(env, port, "--with-worker")
    try:
        time.sleep(2)  # let the worker make its first claim
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert "polling for generate" in output, output
    assert "worker stopped" in output, "the worker must be stopped with the server"
    assert server.returncode == 0


def _queue_a_long_ppo_run(env: dict[str, str], tmp_path: Path, port: int) -> int:
    """On a server without a worker: a project with prompts, a tiny reward model and a tiny starting
    policy registered (put in the artifact store as a worker would), and a PPO run with long steps."""
    admin, helper = _token(env, "admin", "admin"), _token(env, "helper", "worker")
    artifacts = Path(env["PREFLAB_DATA_DIR"]) / "artifacts"
    server = _serve(env, port)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            project = client.post(
                "/api/v1/projects",
                json={"name": "p", "instructions_md": "rank", "completions_per_prompt": 2},
                headers=admin.headers,
            ).json()
            pid = project["id"]
            seed_ready_prompts(client, admin, pid, n=8, k=2)
            forced = {"force": True}  # the reward model is put in the store by hand
            reward = client.post(f"/api/v1/projects/{pid}/train/reward", json=forced, headers=admin.headers)
            reward_job = reward.json()["job_id"]
            shutil.copytree(save_tiny_reward_model(tmp_path / "rm"), artifacts / f"reward/job-{reward_job}")
            reward_id = finish_training_job(client, helper, "reward", reward_job)["model_id"]
            url = f"/api/v1/projects/{pid}/train/ppo"
            seed = client.post(url, json={"reward_model": reward_id, "force": True}, headers=admin.headers)
            save_tiny_model(artifacts / f"ppo/job-{seed.json()['job_id']}")
            start_id = finish_training_job(client, helper, "ppo", seed.json()["job_id"])["model_id"]
            run = {
                "reward_model": reward_id,
                "policy": start_id,
                "steps": 1000,
                "batch_size": 64,
                "minibatch_size": 1,
                "ppo_epochs": 64,
                "max_new_tokens": 8,
                "eval_prompts": 2,  # evaluated before step 1: the sign that training has begun
                "force": True,  # the tiny reward model is random
            }
            return client.post(url, json=run, headers=admin.headers).json()["job_id"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.communicate(timeout=60)


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGKILL], ids=["stopped", "killed"])
def test_no_worker_outlives_its_server_mid_ppo_step(tmp_path: Path, stop: signal.Signals) -> None:
    env = _environment(tmp_path / "data")
    subprocess.run([*PREFLAB, "migrate"], env=env, check=True, capture_output=True)
    port = _free_port()
    job_id = _queue_a_long_ppo_run(env, tmp_path, port)
    admin = _token(env, "watcher", "admin")
    server = _serve(env, port, "--with-worker")
    try:
        deadline = time.monotonic() + 120
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            while (
                "eval/reward_before"
                not in client.get(f"/api/v1/jobs/{job_id}", headers=admin.headers).json()["metrics"]
            ):
                assert time.monotonic() < deadline, "the local worker never began the PPO run"
                time.sleep(0.5)
        time.sleep(1)  # inside the first (long) step
        assert _workers_serving(port), "the worker should be training now"
        server.send_signal(stop)
        stopped = time.monotonic()
        while _workers_serving(port) and time.monotonic() - stopped < STOPPED_WITHIN_SECONDS:
            time.sleep(0.2)
        left = _workers_serving(port)
    finally:
        server.kill()
        output, _ = server.communicate(timeout=60)
        for pid in _workers_serving(port):
            os.kill(pid, signal.SIGKILL)
    assert not left, (
        f"worker {left} still running {STOPPED_WITHIN_SECONDS}s after the server got {stop.name}:\n{output}"
    )
    if stop == signal.SIGTERM:
        assert "received SIGTERM; stopping" in output and "worker stopped" in output, output
        checkpoint = Path(env["PREFLAB_DATA_DIR"]) / "artifacts" / f"ppo/job-{job_id}" / "checkpoint"
        assert (checkpoint / "trainer_state.json").is_file(), "the run checkpointed before it stopped"
        # The next `serve --with-worker` hands the old local worker's job back at once (not after its
        # 5-minute lease) and its new worker takes it up again.
        restarted = _serve(env, port, "--with-worker")
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                job = httpx.get(f"http://127.0.0.1:{port}/api/v1/jobs/{job_id}", headers=admin.headers).json()
                if job["status"] == "running" and job["attempts"] == 1:
                    break
                time.sleep(0.5)
        finally:
            restarted.send_signal(signal.SIGTERM)
            output, _ = restarted.communicate(timeout=60)
        assert f"Handing back job(s) {job_id}" in output and f"job {job_id} (ppo) claimed" in output, output
        assert job["attempts"] == 1, "handing back spends no attempt"
