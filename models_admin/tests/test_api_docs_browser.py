"""/api/docs/ renders in a real browser: Swagger UI from this server's files, under the CSP,
showing the API's operations from /api/schema/."""

from __future__ import annotations

import pytest
from django.test import override_settings

from .browser import artifacts, chromium_page, login

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ARTIFACTS = artifacts("api-docs")


@override_settings(DEBUG=False)
def test_the_api_docs_page_renders_every_operation_without_a_console_error(live_server, monkeypatch, viewer):
    base = live_server.url
    with chromium_page(monkeypatch) as page:
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        login(page, base, viewer.username)
        page.goto(f"{base}/api/docs/")
        page.wait_for_selector(".opblock", timeout=20_000)
        page.wait_for_load_state("networkidle")
        assert page.locator(".information-container .title").inner_text().startswith("ocrdash API")
        operations = page.locator(".opblock-summary-path").all_inner_texts()
        assert any("/api/hosts/" in text for text in operations), operations
        assert any("/api/prune-requests/{request_id}/approve/" in text for text in operations), operations
        page.screenshot(path=str(ARTIFACTS / "api-docs.png"), full_page=False)
        assert not page.errors, page.errors  # CSP refusals and script errors land here
        foreign = [url for url in requested if not url.startswith(base) and not url.startswith("data:")]
        assert not foreign, f"the docs page fetched from elsewhere: {foreign}"
