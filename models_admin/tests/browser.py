"""Debian's chromium driven by Playwright, for the browser tests.

Playwright's own browser download is not used: the tests drive the distribution's chromium,
which in CI containers runs as root and without a GPU, hence the flags.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

from .conftest import PASSWORD

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextmanager
def chromium_page(monkeypatch: pytest.MonkeyPatch, *, width: int = 1280, height: int = 800) -> Iterator[Any]:
    """A fresh page; ``page.errors`` collects script errors and console errors for the test to check."""
    # Playwright's sync API runs an event loop in this thread; the ORM calls the test makes
    # between pages are still plain synchronous calls.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.set_default_timeout(15_000)
        errors: list[str] = []
        page.errors = errors  # type: ignore[attr-defined]  # read by the tests, see the docstring
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        try:
            yield page
        finally:
            # The ORM calls made while Playwright's loop ran opened their own connection (its
            # context differs from the test's); left open, it blocks dropping the test database.
            connections.close_all()
            browser.close()


def artifacts(name: str) -> Path:
    """The folder for one test file's screenshots, for a human to look at."""
    folder = ARTIFACTS / name
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def login(page: Any, base: str, username: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/")
