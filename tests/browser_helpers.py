"""What the browser tests share: Debian's chromium through Playwright, a logged-in page, screenshots."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest

from tests.app_fixtures import LOGIN

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]
SHOTS = Path(os.environ["SCREENSHOT_DIR"]) if os.environ.get("SCREENSHOT_DIR") else None
TIMEOUT_MS = 120_000


@contextlib.contextmanager
def launched_browser():
    """A headless chromium (fails the test with the fix when Debian's chromium is missing)."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed: run bash scripts/install.sh --test")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser, url: str, viewport: tuple[int, int] = (1280, 1000)):
    """A page of its own (own cookies) at ``url``, not logged in."""
    context = browser.new_context(viewport={"width": viewport[0], "height": viewport[1]})
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    return page


def log_in(page, user: tuple[str, str] = LOGIN) -> None:
    page.get_by_label("username").fill(user[0])
    page.get_by_label("password").fill(user[1])
    page.get_by_role("button", name="Login").click()
    page.locator("#txt2img_prompt textarea").wait_for()


def logged_in_page(browser, url: str, user: tuple[str, str] = LOGIN, viewport: tuple[int, int] = (1280, 1000)):
    page = new_page(browser, url, viewport)
    log_in(page, user)
    return page


def shot(page, name: str) -> None:
    """A full-page screenshot into $SCREENSHOT_DIR (when set), to look at."""
    if SHOTS:
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
