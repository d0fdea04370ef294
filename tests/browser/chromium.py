"""The system Chromium for browser tests: Playwright drives /usr/bin/chromium, never a downloaded one."""

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000

needs_chromium = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not shutil.which("chromium"),
        reason="no system Chromium at /usr/bin/chromium (the tests never download a browser)",
    ),
]


def launch(playwright):
    executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    return playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)


@contextmanager
def logged_in(browser, base_url: str, account) -> Iterator:
    """A tab signed in through the real login form; fails if the page raised a JavaScript error or the
    browser blocked anything under the page's Content-Security-Policy."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=base_url)
    context.set_default_timeout(TIMEOUT_MS)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda error: errors.append(str(error)))
    tab.on("console", lambda message: _csp_violation(message, errors))
    tab.goto("/login")
    tab.fill("#username", account.username)
    tab.fill("#password", account.password)
    with tab.expect_navigation():
        tab.click("form[action='/login'] button[type=submit]")
    assert "/login" not in tab.url, f"login failed: {tab.url}"  # labelers land on /, admins on /projects
    yield tab
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _csp_violation(message, errors: list[str]) -> None:
    if message.type == "error" and "Content Security Policy" in message.text:
        errors.append(message.text)
