"""`preflab worker`: claim jobs over the HTTP API and run them, until told to stop.

    python -m trainer.worker --server http://127.0.0.1:8000 --token TOKEN [--kinds generate]

The token may also come from PREFLAB_WORKER_TOKEN (keeps it out of `ps`). The worker rides out server
restarts (retries with back-off), and on SIGTERM or Ctrl-C it stops within seconds (between decoding
steps, generation batches and optimizer steps; a training run checkpoints first) and hands its job back
to the queue when the server answers; a second signal exits at once.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import sys
import threading
import traceback
from pathlib import Path
from typing import Any

from trainer.client import ApiClient, ApiError, ClaimedJob, JobStopped, ServerUnavailable

TRAINED_MODEL_KINDS = {"reward", "sft", "dpo", "ppo"}
"""Job kinds whose artifact is a model directory the worker finishes before registering it."""

log = logging.getLogger("preflab.worker")
HEARTBEAT_SECONDS = 60.0
"""How often a running job's lease is renewed from a side thread (the server's lease is 5 minutes)."""
ALL_KINDS = ["generate", "reward", "ppo", "sft", "dpo"]


class ShutdownRequested(Exception):
    pass


class Worker:
    def __init__(
        self,
        api: ApiClient,
        *,
        name: str,
        kinds: list[str],
        data_dir: Path,
        poll_seconds: float = 2.0,
        heartbeat_seconds: float = HEARTBEAT_SECONDS,
    ):
        self.api = api
        self.name = name
        self.kinds = kinds
        self.cache_dir = data_dir / "cache"
        # The artifact store: model versions live here, shared with the server (PREFLAB_DATA_DIR/artifacts).
        self.artifact_dir = data_dir / "artifacts"
        self.poll_seconds = poll_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.stopping = threading.Event()
        self.api.interrupt = self.stopping  # once stopping, calls to a server that is gone fail at once
        self._policies: dict[str, Any] = {}

    # --- called by job handlers ---------------------------------------------------------------------

    def check_stop(self) -> None:
        if self.stopping.is_set():
            raise ShutdownRequested()

    def load_policy(self, spec: str, artifact: str | None = None) -> Any:
        """Load a generation model once per worker process and keep it for later jobs.

        ``artifact``: a model version's directory relative to the artifact store (``spec`` is then
        "model:<id>"); otherwise ``spec`` is "default" or a local model directory.
        """
        from trainer.policy import load_policy, resolve_model_dir

        if spec not in self._policies:
            log.info("loading model %s", spec)
            directory = self.model_path(artifact) if artifact else resolve_model_dir(spec, self.cache_dir)
            self._policies[spec] = load_policy(directory)
        return self._policies[spec]

    def model_path(self, artifact: str) -> Path:
        """A model version's directory: in this worker's mount of the artifact store (a trained version),
        or the absolute path an imported version was registered from (inside the server's
        PREFLAB_MODEL_DIRS; the worker must see it at the same path)."""
        if Path(artifact).is_absolute():
            path = Path(artifact)
            if not (path / "config.json").is_file():
                raise FileNotFoundError(
                    f"Imported model {artifact!r} is not on this worker: mount it at the same path as on "
                    "the server."
                )
            return path
        path = (self.artifact_dir / artifact).resolve()
        if not path.is_relative_to(self.artifact_dir.resolve()) or not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"Model artifact {artifact!r} is not in this worker's artifact store ({self.artifact_dir}): "
                "give the worker the server's PREFLAB_DATA_DIR (or a copy of its artifacts/)."
            )
        return path

    @staticmethod
    def _handler(kind: str):
        """Imported when first needed: a generation-only worker never loads the training code."""
        if kind == "generate":
            from trainer.generate_job import run_generate_job

            return lambda worker, job: (run_generate_job(worker, job), None)
        if kind == "reward":
            from trainer.reward_job import run_reward_job

            return run_reward_job
        if kind == "ppo":
            from trainer.ppo_job import run_ppo_job

            return run_ppo_job
        if kind == "sft":
            from trainer.sft_job import run_sft_job

            return run_sft_job
        if kind == "dpo":
            from trainer.dpo_job import run_dpo_job

            return run_dpo_job
        raise ValueError(f"this worker cannot run {kind} jobs")

    # --- the loop ----------------------------------------------------------------------------------

    def run(self, *, once: bool = False) -> None:
        log.info("worker %s polling for %s jobs at %s", self.name, ", ".join(self.kinds), self.api.server)
        delay = self.poll_seconds
        reached = False  # before the first answer, a refused connection is a server still starting
        while not self.stopping.is_set():
            try:
                job = self.api.claim(self.kinds, self.name, retries=0)
                if not reached:
                    log.info("server reached; waiting for jobs")
                reached = True
            except ServerUnavailable as exc:
                delay = min(delay * 2, 60.0)  # the server is down or restarting: back off
                # Not an error while the server starts (`serve --with-worker` starts both at once).
                level = logging.WARNING if reached else logging.DEBUG
                log.log(level, "server unavailable (%s); next try in %.0fs", exc, delay)
                self.stopping.wait(delay)
                continue
            delay = self.poll_seconds
            if job is None:
                if once:
                    return
                self.stopping.wait(self.poll_seconds)
                continue
            self.run_job(job)
            if once:
                return

    def run_job(self, job: ClaimedJob) -> None:
        log.info("job %s (%s) claimed, attempt %s", job.id, job.kind, job.attempt)
        try:
            with self._heartbeat(job):
                metrics, artifact = self._handler(job.kind)(self, job)
                if artifact is not None and job.kind in TRAINED_MODEL_KINDS:
                    self._finish_trained_model(job, artifact)
            self.api.complete(job, metrics=metrics, artifact=artifact)
            log.info("job %s succeeded: %s", job.id, metrics)
        except ShutdownRequested:
            log.info("shutting down: handing job %s back to the queue", job.id)
            with contextlib.suppress(JobStopped, ApiError, ServerUnavailable):
                self.api.release(job)  # if this fails, the lease runs out and the server re-queues it
        except JobStopped as exc:
            log.info("job %s stopped by the server: %s", job.id, exc)
        except ServerUnavailable as exc:
            log.error("job %s abandoned, server unreachable (%s); its lease will re-queue it", job.id, exc)
        except Exception as exc:  # any failure of the job itself is reported, not fatal to the worker
            log.error("job %s failed:\n%s", job.id, traceback.format_exc())
            with contextlib.suppress(JobStopped, ApiError, ServerUnavailable):
                self.api.fail(job, f"{type(exc).__name__}: {exc}")

    def _finish_trained_model(self, job: ClaimedJob, artifact: str) -> None:
        """A model card, a portable preflab.json and files that load anywhere (trainer/model_card.py)."""
        from trainer.model_card import finish_trained_model

        finish_trained_model(
            self.artifact_dir / artifact,
            kind=job.kind,
            job_id=job.id,
            project_id=job.project_id,
            config=job.config,
            roots={"artifact": self.artifact_dir, "cache": self.cache_dir},
        )

    @contextlib.contextmanager
    def _heartbeat(self, job: ClaimedJob):
        """Renew the job's lease from a side thread while the handler runs.

        Loading a model, an evaluation pass or one PPO step on a CPU can outlast the lease without a
        single event; a job whose lease ran out is re-queued and another worker would start it again.
        A 409 (cancelled, or lost anyway) ends the heartbeat: the handler learns it at its next report.
        """
        done = threading.Event()
        api = self.api.fork()

        def beat() -> None:
            while not done.wait(self.heartbeat_seconds):
                try:
                    api.heartbeat(job)
                except (JobStopped, ApiError) as exc:
                    log.info("job %s: heartbeat refused (%s)", job.id, exc)
                    return
                except ServerUnavailable as exc:  # a restarting server: try again at the next beat
                    log.warning("job %s: heartbeat failed (%s)", job.id, exc)

        thread = threading.Thread(target=beat, name=f"heartbeat-job-{job.id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=10)
            api.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="preflab worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("--server", default=os.environ.get("PREFLAB_SERVER", "http://127.0.0.1:8000"))
    parser.add_argument(
        "--token",
        default=os.environ.get("PREFLAB_WORKER_TOKEN"),
        help="a worker-role API token (or set PREFLAB_WORKER_TOKEN)",
    )
    parser.add_argument("--kinds", default=",".join(ALL_KINDS), help="job kinds to take, comma-separated")
    parser.add_argument("--name", default=f"{socket.gethostname()}-{os.getpid()}")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(os.environ.get("PREFLAB_DATA_DIR", "data")),
        help="model cache lives in DATA_DIR/cache",
    )
    parser.add_argument("--once", action="store_true", help="run at most one job, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per request drowns the job's log
    if not args.token:
        parser.error(
            "a token is required: --token or PREFLAB_WORKER_TOKEN "
            "(create one with `preflab create-user NAME --role worker --token`)"
        )
    worker = Worker(
        ApiClient(args.server, args.token),
        name=args.name,
        kinds=args.kinds.split(","),
        data_dir=args.data_dir,
    )

    def stop(signum: int, _frame: Any) -> None:
        name = signal.Signals(signum).name
        if worker.stopping.is_set():  # asked twice: the person (or init) means now
            log.warning("received %s again; exiting now (the job's lease will re-queue it)", name)
            os._exit(128 + signum)
        log.info("received %s; stopping within seconds and handing the job back", name)
        worker.stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        worker.run(once=args.once)
    finally:
        worker.api.close()
    log.info("worker stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
