"""Headers every response carries, set in one place.

- ``Cache-Control: no-store`` on everything but static files: pages show a labeler's task, an admin's
  users, a token shown once; none of it may come back from the browser's cache (before this, Back
  after submitting a ranking showed the already-ranked task again). Static files set their own
  caching (app/static_files.py).
- A ``Content-Security-Policy`` that the pages' own vendored JavaScript satisfies: scripts and
  everything else from this server only, no inline script, no eval (htmx needs none: no ``hx-on``, no
  ``js:`` values), no framing. Inline *styles* are allowed: progress bars and chart swatches set a
  width or a colour in a ``style`` attribute, and htmx adds its indicator style. The API docs pages
  set a policy of their own (inline scripts allowed by hash; app/api_docs.py).
- ``X-Frame-Options: DENY`` (older browsers' ``frame-ancestors``), ``X-Content-Type-Options: nosniff``
  (static files too), ``Referrer-Policy: same-origin``.

A route that sets one of these itself keeps its own. A plain ASGI middleware rather than
``BaseHTTPMiddleware``: it touches only the response start, so streamed exports pass through untouched.
"""

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.static_files import STATIC_PREFIX

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; form-action 'self'; "
    "frame-ancestors 'none'"
)
EVERY_RESPONSE = {"X-Content-Type-Options": "nosniff"}
DYNAMIC_RESPONSES = {
    "Cache-Control": "no-store",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class ResponseHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        defaults = dict(EVERY_RESPONSE)
        if not scope["path"].startswith(STATIC_PREFIX + "/"):
            defaults |= DYNAMIC_RESPONSES

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in defaults.items():
                    if name.lower() not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
