"""The worker's side of the HTTP API (see API.md, "Worker protocol"). The worker never touches the
database: everything it reads and writes goes through these calls, so it can run on any machine that
reaches the server."""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

log = logging.getLogger("preflab.worker")

# 409 codes that mean "stop working on this job".
STOP_CODES = {"job_cancelled", "job_not_running", "lease_lost", "job_not_held"}


class JobStopped(Exception):
    """The server says this worker must stop the job: cancelled, re-queued elsewhere, or finished."""


class ServerUnavailable(Exception):
    """The server could not be reached (or answered 5xx) even after retrying."""


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


@dataclass
class ClaimedJob:
    id: int
    kind: str
    project_id: int | None
    config: dict[str, Any]
    attempt: int


class ApiClient:
    def __init__(
        self,
        server: str,
        token: str,
        *,
        timeout: float = 60.0,
        retries: int = 8,
        sleep: Callable[[float], None] = time.sleep,
        interrupt: threading.Event | None = None,
    ):
        self.server, self.token = server, token
        self.http = httpx.Client(
            base_url=server.rstrip("/") + "/api/v1",
            timeout=timeout,
            headers={"Authorization": f"Bearer {token}"},
        )
        self.retries = retries
        self.sleep = sleep
        # Set when the worker is stopping: a call to an unreachable server then fails at once instead of
        # retrying for minutes, so the worker exits within seconds even when its server is gone.
        self.interrupt = interrupt

    def close(self) -> None:
        self.http.close()

    # --- transport ---------------------------------------------------------------------------------

    def request(self, method: str, path: str, *, retries: int | None = None, **kwargs: Any) -> httpx.Response:
        """Send with retries and exponential back-off on network errors and 5xx, so a worker rides out a
        server restart; 4xx answers are raised as ApiError (or JobStopped) at once."""
        attempts = self.retries if retries is None else retries
        delay = 0.5
        for attempt in range(attempts + 1):
            try:
                response = self.http.request(method, path, **kwargs)
            except httpx.TransportError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code < 500:
                    return self._check(response)
                problem = f"HTTP {response.status_code}"
            if attempt == attempts or (self.interrupt is not None and self.interrupt.is_set()):
                raise ServerUnavailable(f"{method} {path}: {problem}")
            log.warning("%s %s failed (%s); retrying in %.1fs", method, path, problem, delay)
            if self.interrupt is not None:
                self.interrupt.wait(delay)
            else:
                self.sleep(delay)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    @staticmethod
    def _check(response: httpx.Response) -> httpx.Response:
        if response.status_code < 400:
            return response
        try:
            error = response.json()["error"]
            code, message = error["code"], error["message"]
        except (ValueError, KeyError, TypeError):
            code, message = "http_error", response.text[:500]
        if response.status_code == 409 and code in STOP_CODES:
            raise JobStopped(message)
        raise ApiError(response.status_code, code, message)

    # --- worker protocol ---------------------------------------------------------------------------

    def claim(self, kinds: list[str], worker: str, *, retries: int | None = None) -> ClaimedJob | None:
        response = self.request(
            "POST", "/worker/claim", json={"kinds": kinds, "worker": worker}, retries=retries
        )
        if response.status_code == 204:
            return None
        body = response.json()
        return ClaimedJob(
            id=body["id"],
            kind=body["kind"],
            project_id=body["project_id"],
            config=body["config"],
            attempt=body["attempts"],
        )

    def event(
        self,
        job: ClaimedJob,
        *,
        progress: float | None = None,
        metrics: dict | None = None,
        log_text: str | None = None,
        retries: int | None = None,
    ) -> None:
        self.request(
            "POST",
            f"/jobs/{job.id}/events",
            json={
                "attempt": job.attempt,
                "progress": progress,
                "metrics": storable(metrics or {}),
                "log": storable(log_text),
            },
            retries=retries,
        )

    def complete(self, job: ClaimedJob, *, artifact: str | None = None, metrics: dict | None = None) -> None:
        self.request(
            "POST",
            f"/jobs/{job.id}/complete",
            json={"attempt": job.attempt, "artifact": artifact, "metrics": storable(metrics or {})},
        )

    def fail(self, job: ClaimedJob, error: str) -> None:
        self.request(
            "POST", f"/jobs/{job.id}/fail", json={"attempt": job.attempt, "error": storable(error[:100_000])}
        )

    def heartbeat(self, job: ClaimedJob) -> None:
        self.request("POST", f"/jobs/{job.id}/heartbeat", json={"attempt": job.attempt}, retries=0)

    def fork(self) -> ApiClient:
        """A second client to the same server (its own connections), for another thread."""
        return ApiClient(
            self.server, self.token, retries=self.retries, sleep=self.sleep, interrupt=self.interrupt
        )

    def release(self, job: ClaimedJob) -> None:
        self.request("POST", f"/jobs/{job.id}/release", json={"attempt": job.attempt}, retries=2)

    def job_status(self, job: ClaimedJob, *, retries: int = 2) -> str:
        return self.request("GET", f"/jobs/{job.id}", retries=retries).json()["status"]

    # --- data ----------------------------------------------------------------------------------------

    def download_export(self, project_id: int, params: dict, path: Path) -> int:
        """Stream an export to `path` (written whole or not at all); returns the number of rows."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(path.suffix + ".part")
        rows = 0
        with self.http.stream("GET", f"/projects/{project_id}/export", params=params) as response:
            if response.status_code >= 400:
                response.read()
                self._check(response)
            with partial.open("wb") as file:
                for chunk in response.iter_bytes():
                    file.write(chunk)
                    rows += chunk.count(b"\n")
        partial.replace(path)
        return rows

    # --- generation --------------------------------------------------------------------------------

    def pending_prompts(self, project_id: int, page_size: int = 500) -> Iterator[dict]:
        """Every prompt of the project that still has fewer than K completions."""
        return self.prompts(project_id, status="pending", page_size=page_size)

    def prompts(self, project_id: int, *, status: str | None = None, page_size: int = 500) -> Iterator[dict]:
        """The project's prompts (with a status: only those), page by page."""
        cursor = None
        while True:
            params = {"limit": page_size, **({"status": status} if status else {})}
            params |= {"cursor": cursor} if cursor else {}
            page = self.request("GET", f"/projects/{project_id}/prompts", params=params).json()
            yield from page["items"]
            cursor = page["next_cursor"]
            if not cursor:
                return

    def store_completions(self, job: ClaimedJob, items: list[dict]) -> dict:
        response = self.request(
            "POST", f"/jobs/{job.id}/completions", json={"attempt": job.attempt, "items": storable(items)}
        )
        return response.json()


def storable(value: Any) -> Any:
    """A report the server can store (app/storable.py refuses the rest): NaN and Infinity (a diverged
    loss) become null, NUL characters (from a traceback or a model's output) are dropped."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return value.replace("\x00", "")
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value
