"""The interactive API docs (Swagger UI at /api/v1/docs, ReDoc at /api/v1/redoc), served offline.

FastAPI's built-in pages load their JavaScript and CSS from a CDN, so they are blank on a machine
without Internet access. These use the vendored, pinned copies under static/vendor/ (see
static/VENDORED.md), with ReDoc's Google Fonts and Swagger UI's online validator badge turned off.
ReDoc's sidebar still asks cdn.redoc.ly for its logo, so both pages carry a Content-Security-Policy that
allows this server only (inline scripts by their hash): neither asks any other host for anything.
"""

import base64
import hashlib
import re

from fastapi import APIRouter
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse

from app.static_files import static_url

API_PREFIX = "/api/v1"
OPENAPI_URL = f"{API_PREFIX}/openapi.json"
DOCS_URL = f"{API_PREFIX}/docs"
REDOC_URL = f"{API_PREFIX}/redoc"

router = APIRouter(include_in_schema=False)
INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


def same_origin_only(page: HTMLResponse) -> HTMLResponse:
    """Add a CSP that lets the page load from this server alone; its inline scripts pass by hash.

    Styles may be inline (both bundles inject their own); ReDoc runs its search in a blob: worker.
    """
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"
        for script in INLINE_SCRIPT.findall(page.body.decode())
    )
    page.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' {hashes}; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    )
    return page


@router.get(DOCS_URL)
def swagger_ui() -> HTMLResponse:
    page = get_swagger_ui_html(
        openapi_url=OPENAPI_URL,
        title="PrefLab API",
        swagger_js_url=static_url("vendor/swagger-ui/swagger-ui-bundle.js"),
        swagger_css_url=static_url("vendor/swagger-ui/swagger-ui.css"),
        swagger_favicon_url=static_url("vendor/swagger-ui/favicon-32x32.png"),
        oauth2_redirect_url=None,
        swagger_ui_parameters={"validatorUrl": None},  # the default badge is an image from swagger.io
    )
    return same_origin_only(page)


@router.get(REDOC_URL)
def redoc() -> HTMLResponse:
    page = get_redoc_html(
        openapi_url=OPENAPI_URL,
        title="PrefLab API",
        redoc_js_url=static_url("vendor/redoc/redoc.standalone.js"),
        redoc_favicon_url=static_url("vendor/swagger-ui/favicon-32x32.png"),
        with_google_fonts=False,
    )
    return same_origin_only(page)
