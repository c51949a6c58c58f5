from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_program

# Pages worth looking at after a run (not compared): var/screenshots, ignored by git.
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def chromium_path() -> str:
    return require_program("chromium", package="chromium")


@pytest.fixture
def browser(chromium_path: str, tmp_path: Path) -> Iterator[Any]:
    """A headless Debian Chromium driven by Playwright (its own driver, no downloads)."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own database work
    # (fixtures, assertions) is still plain synchronous code.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            context = playwright.chromium.launch_persistent_context(
                str(tmp_path / "profile"),
                executable_path=chromium_path,
                headless=True,
                args=CHROMIUM_FLAGS,
                viewport={"width": 390, "height": 844},  # a phone
                locale="en-US",
            )
            try:
                yield context
            finally:
                context.close()
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


def log_in(page: Any, base_url: str, email: str, password: str) -> Any:
    """Log `page` in through the log-in form, as a user would; returns the page."""
    page.goto(f"{base_url}/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("button.primary")
    page.wait_for_url(f"{base_url}/")
    return page
