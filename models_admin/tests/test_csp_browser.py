"""Finding 5 (CSP): with DEBUG off the main pages, their charts and the Django admin run under
the Content-Security-Policy without a single violation in the browser's console.

The policy allows scripts only from our own static files; an inline ``<script>`` or ``onsubmit``
left in a template would show here as "Refused to execute inline ...". The first check makes
sure such a refusal is seen at all, so that a silent console means something.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.test import override_settings
from django.utils import timezone
from playwright.sync_api import Dialog

from .browser import artifacts, chromium_page, login
from .history_factories import host, prune, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]
ARTIFACTS = artifacts("csp")


def _violations(page) -> list[str]:
    return [e for e in page.errors if "Content Security Policy" in e or "Refused to" in e]


@override_settings(DEBUG=False)
def test_the_main_pages_and_the_admin_live_with_the_csp(live_server, monkeypatch, operator, approver):
    h = host("ocr-csp-1")
    now = timezone.now()
    snapshot(h, now - timedelta(days=3), {"models/en.gguf": 2_000_000, "models/old_fr.bin": 1_000_000})
    snapshot(h, now - timedelta(hours=1), {"models/en.gguf": 2_000_000})
    prune(h, [("models/old_fr.bin", 1_000_000, "pending", 0)], created_at=now, requested_by=operator)
    User.objects.filter(pk=approver.pk).update(is_staff=True, is_superuser=True)
    base = live_server.url
    with chromium_page(monkeypatch) as page:
        # The control: an inline script is refused, and the refusal reaches page.errors.
        response = page.goto(f"{base}/accounts/login/")
        assert "script-src 'self'" in response.headers["content-security-policy"]
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.x = 1'; document.body.append(s); }"
        )
        page.wait_for_timeout(200)
        assert _violations(page), "an inline script must be refused and seen"
        assert page.evaluate("() => window.x") is None
        page.errors.clear()

        login(page, base, approver.username)
        for path in (
            "/",
            f"/hosts/{h.name}/",
            f"/hosts/{h.name}/timeline/",
            "/requests/",
            "/models/",
            "/audit/",
            "/reports/",
            "/reports/deletions/",
            "/enrollment/",
            "/account/",
            "/api/docs/",
            "/admin/",
            "/admin/models_admin/host/",
            "/admin/axes/accessattempt/",
        ):
            page.goto(f"{base}{path}")
            page.wait_for_load_state("networkidle")
            # The admin asks for /favicon.ico, which the dashboard does not have: a 404, no error.
            errors = [e for e in page.errors if not (path.startswith("/admin/") and "404" in e)]
            assert not errors, f"{path}: {errors}"
            page.errors.clear()
        page.goto(f"{base}/reports/")
        page.wait_for_load_state("networkidle")
        # The charts drew (Chart.js from the vendored file, data from json_script).
        assert page.evaluate("() => document.querySelectorAll('canvas').length") >= 1
        assert page.evaluate("() => typeof window.Chart") == "function"
        page.screenshot(path=str(ARTIFACTS / "reports.png"), full_page=True)
        # The confirm() that replaced the inline onsubmit still asks before revoking a key.
        page.goto(f"{base}/hosts/{h.name}/")
        asked: list[str] = []

        def answer(dialog: Dialog) -> None:
            asked.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", answer)
        page.click("button:has-text('Retire host')")
        page.wait_for_timeout(300)
        assert asked and "Retire ocr-csp-1?" in asked[0]
        assert not _violations(page)
