"""Headers every dynamic response carries, set in one place.

``Cache-Control: no-store`` on everything but static files: pages show a labeler's task, an admin's
users, a token shown once; none of it may come back from the browser's cache (before this, Back after
submitting a ranking showed the already-ranked task again). Static files set their own caching
(app/static_files.py). A route that sets Cache-Control itself keeps its own.

A plain ASGI middleware rather than ``BaseHTTPMiddleware``: it touches only the response start, so
streamed exports pass through untouched.
"""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.static_files import STATIC_PREFIX

NO_STORE = "no-store"


class ResponseHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(STATIC_PREFIX + "/"):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                if "cache-control" not in headers:
                    headers["Cache-Control"] = NO_STORE
            await send(message)

        await self.app(scope, receive, send_with_headers)
