"""Stopping a training run: a worker whose server is gone stops (checkpoint kept) instead of training on."""

import socket
import threading
import time
from types import SimpleNamespace

import pytest

from trainer.client import ApiClient, ClaimedJob, ServerUnavailable
from trainer.job_control import StopPoller

JOB = ClaimedJob(id=1, kind="ppo", project_id=1, config={}, attempt=1)


def closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # nothing listens once the socket closes


def test_a_server_gone_for_long_enough_stops_the_run() -> None:
    worker = SimpleNamespace(stopping=threading.Event(), api=ApiClient(closed_port(), "token"))
    poll = StopPoller(worker, JOB, every=0.0, server_gone_after=0.3)
    started = time.monotonic()
    assert poll() is False, "one refused connection is a restart, not a gone server"
    while not poll():
        assert time.monotonic() - started < 5, "each poll must fail fast, not retry for minutes"
        time.sleep(0.05)
    assert time.monotonic() - started >= 0.3
    with pytest.raises(ServerUnavailable, match="unreachable for"):
        poll.raise_stop()


def test_a_stopping_worker_s_calls_give_up_at_once() -> None:
    stopping = threading.Event()
    api = ApiClient(closed_port(), "token", retries=8, interrupt=stopping)
    stopping.set()
    started = time.monotonic()
    with pytest.raises(ServerUnavailable):
        api.job_status(JOB, retries=8)
    assert time.monotonic() - started < 2, "no back-off once the worker is stopping (8 retries: ~2 minutes)"
