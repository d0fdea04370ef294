"""`preflab serve --with-worker` starts a worker beside the server and stops it on SIGTERM."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytest.importorskip("torch", reason="the worker needs the trainer extras")


def test_serve_with_worker_starts_and_stops_both(tmp_path: Path) -> None:
    env = {**os.environ, "PREFLAB_DEV": "1", "PREFLAB_DATA_DIR": str(tmp_path)}
    env.pop("PREFLAB_DATABASE_URL", None)
    subprocess.run([sys.executable, "-m", "app.cli", "migrate"], env=env, check=True, capture_output=True)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--with-worker"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        time.sleep(2)  # let the worker make its first claim
    finally:
        server.send_signal(signal.SIGTERM)
        output, _ = server.communicate(timeout=60)
    assert "polling for generate" in output, output
    assert "worker stopped" in output, "the worker must be stopped with the server"
    assert server.returncode == 0
