"""The API docs in a real headless Chromium with every request to another host blocked: both pages
must render the operations from the vendored files alone (FastAPI's defaults load from a CDN and were
blank offline: "SwaggerUIBundle is not defined").

Needs Playwright's Python package and a system Chromium at /usr/bin/chromium (never downloaded).
"""

from urllib.parse import urlsplit

from tests.browser.chromium import TIMEOUT_MS, needs_chromium

pytestmark = needs_chromium


def offline_tab(browser, base_url: str):
    """A tab whose every request outside 127.0.0.1 is aborted and recorded."""
    context = browser.new_context(base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    blocked: list[str] = []

    def only_loopback(route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            blocked.append(route.request.url)
            route.abort()

    context.route("**/*", only_loopback)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    return context, tab, blocked, errors


def test_swagger_ui_lists_the_operations_offline(browser, live_server) -> None:
    context, tab, blocked, errors = offline_tab(browser, live_server)
    tab.goto("/api/v1/docs")
    tab.wait_for_selector(".opblock-summary-path")
    paths = tab.locator(".opblock-summary-path").all_inner_texts()
    assert any("/api/v1/tasks/next" in path for path in paths), paths[:10]
    assert any("/api/v1/projects/{project_id}/export" in path for path in paths)
    context.close()
    assert not errors, errors
    assert not blocked, f"the page asked other hosts for: {blocked}"


def test_redoc_lists_the_operations_offline(browser, live_server) -> None:
    context, tab, blocked, errors = offline_tab(browser, live_server)
    tab.goto("/api/v1/redoc")
    tab.wait_for_selector("[data-section-id^='operation/']", state="attached")
    assert tab.locator("[data-section-id^='operation/']").count() > 30, "one section per operation"
    assert tab.get_by_text("/api/v1/tasks/next").count() > 0
    context.close()
    assert not errors, errors
    assert not blocked, f"the page asked other hosts for: {blocked}"
