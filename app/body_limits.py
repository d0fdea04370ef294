"""A size limit on every request body, by kind: JSON and forms are small; uploads (JSONL, CSV, gzip,
multipart files) may be up to PREFLAB_MAX_UPLOAD_MB, which their routes also check while streaming.

Without it a labeler's 62 MB ranking was parsed whole (+390 MB of server memory) before any check.
Starlette's limiter does the counting (refusing on Content-Length before reading, or as bytes arrive)
and FastAPI turns it into a 413, which app.main words like every other error.
"""

from starlette.datastructures import Headers
from starlette.middleware.body_limit import RequestBodyLimitResponder
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app.errors import PayloadTooLarge

SMALL_BODIES = ("application/json", "application/x-www-form-urlencoded")
UPLOAD_SLACK = 2**20  # multipart boundaries and headers around the file


class BodyLimits:
    def __init__(self, app: ASGIApp, *, small_bytes: int, upload_bytes: int):
        self.app = app
        self.small_bytes = small_bytes
        self.upload_bytes = upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        small = content_type in SMALL_BODIES or content_type.endswith("+json") or not content_type
        # uploads: a backstop above the routes' own check, which fires first with the exact limit
        limit = self.small_bytes if small else self.upload_bytes + UPLOAD_SLACK
        declared = headers.get("content-length", "")
        if declared.isascii() and declared.isdigit() and int(declared) > limit:
            # said up front: answered in the API's error shape (Starlette's limiter would answer in text)
            setting = "PREFLAB_MAX_JSON_MB" if small else "PREFLAB_MAX_UPLOAD_MB"
            error = PayloadTooLarge(
                f"The request body is larger than the {limit / 2**20:g} MB limit ({setting}).",
                details={"limit_bytes": limit},
            )
            await JSONResponse(error.as_body(), status_code=413)(scope, receive, send)
            return
        await RequestBodyLimitResponder(self.app, limit)(scope, receive, send)
