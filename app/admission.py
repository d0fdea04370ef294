"""Admission to the database: at most a few requests hold a database session at once; the others wait
their turn in the event loop, holding neither a thread nor a connection.

Why: FastAPI runs a route's sync code, and the commit of its session, in a pool of 40 threads. With
more requests than that in flight, every thread could be taken by requests waiting for a pooled
connection or for SQLite's write lock, while the request holding the lock waited for a free thread to
commit: the server froze until the 30-second timeouts fired (500s and 503s from a burst of 45 requests).
Admitting fewer requests than there are threads and connections means the one holding the lock can
always finish.
"""

import asyncio
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.errors import ServiceUnavailable

# Requests holding a session at once. SQLite runs one write transaction at a time whatever this is, so
# a few are enough to keep it busy; Postgres runs them in parallel, up to its pool (app.db). Both stay
# well under the 40 threads anyio lends FastAPI.
CONCURRENT_SESSIONS = {"sqlite": 8, "postgresql": 24}
WAIT_SECONDS = 20.0
"""How long a request may queue for admission before it is told to retry (503)."""
RETRY_AFTER_SECONDS = 2


class DatabaseGate:
    def __init__(self, limit: int, wait_seconds: float = WAIT_SECONDS):
        self.limit = limit
        self.wait_seconds = wait_seconds
        # one semaphore per event loop: an asyncio primitive belongs to the loop that first waits on it,
        # and a test client runs each app in a loop of its own
        self._slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary()
        )

    @classmethod
    def for_dialect(cls, dialect: str) -> "DatabaseGate":
        return cls(CONCURRENT_SESSIONS.get(dialect, min(CONCURRENT_SESSIONS.values())))

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        slots = self._slots.setdefault(loop, asyncio.Semaphore(self.limit))
        try:
            await asyncio.wait_for(slots.acquire(), self.wait_seconds)
        except TimeoutError:
            raise ServiceUnavailable(
                f"The server is busy: every database slot has been taken for {self.wait_seconds:g} s. "
                f"Retry in {RETRY_AFTER_SECONDS} s.",
                code="server_busy",
                retry_after=RETRY_AFTER_SECONDS,
            ) from None
        try:
            yield
        finally:
            slots.release()
