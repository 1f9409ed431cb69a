"""Playwright (sync API) driving Debian's chromium against pytest-django's live server.

Never ``playwright install``: ``scripts/install_browser.sh`` installs /usr/bin/chromium and the
tests are skipped when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
_ASYNC_UNSAFE = "DJANGO_ALLOW_ASYNC_UNSAFE"


@pytest.fixture(scope="module")
def browser(django_db_setup):
    """One chromium per module, started after the test database exists.

    Playwright's sync API keeps an event loop running in this thread while it is alive; the ORM
    calls the tests and pytest-django's own fixtures make around it are synchronous, so Django's
    async-safety guard is relaxed exactly while the browser lives, and restored afterwards (so
    the subprocesses of other test modules never inherit it).
    """
    if not os.path.exists(CHROMIUM):
        pytest.skip("chromium is not installed (run scripts/install_browser.sh)")
    from playwright.sync_api import sync_playwright

    previous = os.environ.get(_ASYNC_UNSAFE)
    os.environ[_ASYNC_UNSAFE] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop(_ASYNC_UNSAFE, None)
        else:
            os.environ[_ASYNC_UNSAFE] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, device_scale_factor=1)
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
