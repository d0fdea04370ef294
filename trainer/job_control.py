"""Stopping a long training job: on the worker's shutdown, when the admin cancels it in the browser, or
when the server has gone away."""

from __future__ import annotations

import time
from typing import Any

from trainer.client import ClaimedJob, JobStopped, ServerUnavailable

CANCEL_POLL_SECONDS = 2.0
SERVER_GONE_SECONDS = 60.0
"""How long the server may stay unreachable before a training run stops (checkpoint kept) instead of
training on for nobody: long enough for a restart, far shorter than the 5-minute lease."""


class StopPoller:
    """The ``should_stop`` a training loop polls between decoding and optimizer steps.

    True once the worker is shutting down, once the server says the job was cancelled, or once the
    server has been unreachable for ``server_gone_after`` seconds; the server is asked at most every
    ``every`` seconds, so a cancel in the browser stops the run within seconds.
    """

    def __init__(
        self,
        ctx: Any,
        job: ClaimedJob,
        every: float = CANCEL_POLL_SECONDS,
        server_gone_after: float = SERVER_GONE_SECONDS,
    ) -> None:
        self.ctx = ctx
        self.job = job
        self.every = every
        self.server_gone_after = server_gone_after
        self.cancelled = False
        self.server_gone: str | None = None
        self._last_check = float("-inf")
        self._unreachable_since: float | None = None

    def __call__(self) -> bool:
        if self.ctx.stopping.is_set():
            return True
        now = time.monotonic()
        if now - self._last_check >= self.every:
            self._last_check = now
            try:
                self.cancelled = self.ctx.api.job_status(self.job, retries=0) == "cancelled"
                self._unreachable_since = None
            except ServerUnavailable as exc:
                self._unreachable_since = self._unreachable_since or now
                if now - self._unreachable_since >= self.server_gone_after:
                    self.server_gone = (
                        f"the server was unreachable for {now - self._unreachable_since:.0f}s ({exc})"
                    )
        return self.cancelled or self.server_gone is not None

    def raise_stop(self) -> None:
        """After the loop stopped early: end the job the way it was stopped."""
        if self.cancelled:
            raise JobStopped("cancelled from the browser; checkpoint kept")
        if self.server_gone:
            raise ServerUnavailable(f"{self.server_gone}; stopped, checkpoint kept")
        self.ctx.check_stop()  # a shutdown: hand the job back; the next claim resumes from the checkpoint


def train_reporting_epochs(
    ctx: Any, job: ClaimedJob, *, epochs: int, train: Any, max_steps: int | None = None
) -> dict[str, Any]:
    """Run ``train(report, should_stop, data_source)`` for an epoch-based job (reward model, SFT, DPO):
    its figures go out as job events with the progress its epoch implies, a stop from the browser or the
    worker ends the job the way it was stopped, and the final figures come back."""
    should_stop = StopPoller(ctx, job)

    def report(metrics: dict[str, Any]) -> None:
        done = float(metrics.get("epoch", 0.0)) / epochs
        if max_steps:  # a run cut short by max_steps ends before its epochs do
            done = max(done, float(metrics.get("step", 0)) / max_steps)
        ctx.api.event(job, progress=min(0.99, 0.02 + 0.97 * done), metrics=metrics)

    data_source = {"project_id": job.project_id, "export_filters": job.config.get("filters", {})}
    result = train(report, should_stop, data_source)
    if result.stopped:
        should_stop.raise_stop()
    return dict(result.metrics)
