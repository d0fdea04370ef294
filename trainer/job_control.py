"""Stopping a long training job: on the worker's shutdown, or when the admin cancels it in the browser."""

from __future__ import annotations

import time
from typing import Any

from trainer.client import ClaimedJob, JobStopped

CANCEL_POLL_SECONDS = 2.0


class StopPoller:
    """The ``should_stop`` a training loop polls between steps.

    True once the worker is shutting down, or once the server says the job was cancelled; the server is
    asked at most every ``CANCEL_POLL_SECONDS``, so a cancel in the browser stops the run within seconds.
    """

    def __init__(self, ctx: Any, job: ClaimedJob, every: float = CANCEL_POLL_SECONDS) -> None:
        self.ctx = ctx
        self.job = job
        self.every = every
        self.cancelled = False
        self._last_check = float("-inf")

    def __call__(self) -> bool:
        if self.ctx.stopping.is_set():
            return True
        now = time.monotonic()
        if now - self._last_check >= self.every:
            self._last_check = now
            self.cancelled = self.ctx.api.job_status(self.job) == "cancelled"
        return self.cancelled

    def raise_stop(self) -> None:
        """After the loop stopped early: end the job the way it was stopped."""
        if self.cancelled:
            raise JobStopped("cancelled from the browser; checkpoint kept")
        self.ctx.check_stop()  # a shutdown: hand the job back; the next claim resumes from the checkpoint
