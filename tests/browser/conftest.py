"""The browser tests' Chromium: one per test session, launched only when a test asks for it."""

from collections.abc import Iterator

import pytest

from tests.browser.chromium import launch


@pytest.fixture(scope="session")
def browser() -> Iterator:
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="Playwright's Python package is not installed (pip install playwright)"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()
