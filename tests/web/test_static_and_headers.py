"""Static files (versioned URLs, gzip, cache headers), the no-store rule for pages, the vendored files'
checksums, and the access-log filter for a worker's routine calls."""

import gzip
import hashlib
import logging
import re

import pytest

from app.access_log import QuietWorkerPolling
from app.settings import PROJECT_ROOT
from app.static_files import static_url
from tests.conftest import browser_login

STATIC = PROJECT_ROOT / "static"


def vendored_rows() -> list[tuple[str, str]]:
    rows = []
    for line in (STATIC / "VENDORED.md").read_text().splitlines():
        match = re.match(r"\| `([^`]+)` \|.*\| `([0-9a-f]{64})` \|$", line)
        if match:
            rows.append((match.group(1), match.group(2)))
    return rows


def test_every_vendored_file_matches_its_listed_checksum() -> None:
    rows = vendored_rows()
    listed = {path for path, _ in rows}
    expected = {"js/htmx.min.js", "vendor/swagger-ui/swagger-ui.css", "vendor/redoc/redoc.standalone.js"}
    assert expected <= listed
    for path, digest in rows:
        assert hashlib.sha256((STATIC / path).read_bytes()).hexdigest() == digest, path


def test_a_versioned_url_is_cached_for_a_year_and_sent_gzipped(client) -> None:
    url = static_url("vendor/swagger-ui/swagger-ui-bundle.js")
    plain = (STATIC / "vendor/swagger-ui/swagger-ui-bundle.js").read_bytes()
    assert url.endswith("?v=" + hashlib.sha256(plain).hexdigest()[:12])
    # httpx would inflate the body itself; read the raw bytes to see what travelled
    with client.stream("GET", url, headers={"Accept-Encoding": "gzip"}) as response:
        raw = b"".join(response.iter_raw())
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["vary"] == "Accept-Encoding"
    assert len(raw) < len(plain) / 2 and gzip.decompress(raw) == plain
    again = client.get(url, headers={"Accept-Encoding": "gzip", "If-None-Match": response.headers["etag"]})
    assert again.status_code == 304


def test_an_unversioned_or_stale_url_must_revalidate(client) -> None:
    for url in ("/static/js/htmx.min.js", "/static/js/htmx.min.js?v=000000000000"):
        response = client.get(url, headers={"Accept-Encoding": "identity"})
        assert response.status_code == 200 and "content-encoding" not in response.headers
        assert response.headers["cache-control"] == "no-cache", url
        assert response.content == (STATIC / "js/htmx.min.js").read_bytes()


def test_gzip_refused_with_q0_gets_the_plain_file(client) -> None:
    response = client.get(static_url("css/app.css"), headers={"Accept-Encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in response.headers


def test_pages_link_static_files_by_versioned_url(client, make_account) -> None:
    browser_login(client, make_account("labeler"))
    page = client.get("/").text
    for path in ("css/app.css", "js/htmx.min.js", "js/app.js"):
        assert static_url(path) in page, path
    assert 'src="/static/' not in page.replace(static_url("js/htmx.min.js"), "").replace(
        static_url("js/app.js"), ""
    ), "every static link carries its version"


@pytest.mark.parametrize("path", ["/", "/label", "/login", "/api/v1/me", "/api/v1/docs"])
def test_dynamic_responses_are_never_stored_by_the_browser(client, make_account, path) -> None:
    browser_login(client, make_account("labeler"))
    response = client.get(path)
    assert response.headers["cache-control"] == "no-store", path


@pytest.mark.parametrize("path", ["/", "/label", "/login", "/api/v1/me", "/no-such-page"])
def test_every_page_carries_the_security_headers(client, make_account, path) -> None:
    browser_login(client, make_account("labeler"))
    response = client.get(path)
    policy = response.headers["content-security-policy"]
    assert (
        "script-src 'self';" in policy and "frame-ancestors 'none'" in policy and "unsafe-eval" not in policy
    )
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    static = client.get(static_url("js/app.js"))
    assert (
        static.headers["x-content-type-options"] == "nosniff"
        and "content-security-policy" not in static.headers
    )


def test_no_page_template_has_an_inline_script_or_handler() -> None:
    """What the CSP forbids must not be there: an inline <script> or on*= attribute would be blocked."""
    for template in (PROJECT_ROOT / "templates").rglob("*.html"):
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), template
        assert not re.search(r"\son[a-z]+\s*=", text), template
        assert "hx-on" not in text, template


def test_the_docs_pages_load_nothing_from_another_host(client) -> None:
    for path in ("/api/v1/docs", "/api/v1/redoc"):
        response = client.get(path)
        policy = response.headers["content-security-policy"]
        assert policy.startswith("default-src 'self'; script-src 'self' "), policy
        page = response.text
        for host in ("cdn.jsdelivr", "fonts.googleapis", "fastapi.tiangolo"):
            assert host not in page, (path, host)
        for url in re.findall(r'(?:src|href)="([^"]+)"', page):
            assert url.startswith("/static/"), url
            assert client.get(url).status_code == 200, url


def access_record(path: str, status: int) -> logging.LogRecord:
    args = ("127.0.0.1:5000", "POST", path, "1.1", status)
    return logging.LogRecord("uvicorn.access", logging.INFO, "", 0, '%s - "%s %s HTTP/%s" %d', args, None)


@pytest.mark.parametrize(
    ("path", "status", "logged"),
    [
        ("/api/v1/worker/claim", 204, False),
        ("/api/v1/worker/claim", 200, False),
        ("/api/v1/jobs/12/heartbeat", 204, False),
        ("/api/v1/jobs/12/events", 204, False),
        ("/api/v1/worker/claim", 401, True),  # failures still show
        ("/api/v1/jobs/12/events", 409, True),
        ("/api/v1/jobs/12/complete", 200, True),  # a job's end is news
        ("/api/v1/tasks/next?project_id=1", 200, True),
    ],
)
def test_the_access_log_drops_only_a_workers_routine_calls(path: str, status: int, logged: bool) -> None:
    assert QuietWorkerPolling().filter(access_record(path, status)) is logged
