"""The campaign page follows its rollout without a reload, in a real browser.

An approver watches a running campaign: when the canary's host answers, its line turns *Done*,
the next wave goes out, and the bytes it moved show as "in quarantine" (still on the host's
disk), not as freed, on the page that was open. When the last wave ends the page reloads
itself once, so its buttons match the finished campaign.
"""

from __future__ import annotations

import pytest
from django.db import transaction

from models_admin.approvals import workflow
from models_admin.campaigns import plan, rollout
from models_admin.fleet import labels
from models_admin.models import Campaign, PruneRequest
from models_admin.tests.conftest import sha
from workers.schema import ItemOutcome, Outcome

from .browser import artifacts, chromium_page, login

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = artifacts("browser-campaign-live")
OLD = "old_fr_ocr_v1.bin"


def answer(request: PruneRequest) -> None:
    """The host's answer, as ingest applies it: every item quarantined."""
    with transaction.atomic():
        workflow.record_outcomes(
            request.id,
            [
                ItemOutcome(path=i.path, outcome=Outcome.QUARANTINED, bytes_reclaimed=i.size)
                for i in request.items.all()
            ],
        )


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_campaign_page_shows_each_wave_finish_without_a_reload(
    live_server, monkeypatch, make_host, operator, approver, host_queue
):
    for i in (1, 2, 3):
        host = make_host(f"ocr-c{i}", {"en_ocr_v1.gguf": 2_000, OLD: 1_000})
        labels.set_labels(host, {"env": "prod"}, approver)
        host_queue(host.name)  # emptied at the end: the orders go to Redis, no agent takes them
    campaign = rollout.propose(
        plan.Spec(
            target_kind=Campaign.Target.SELECTOR,
            selector={"env": "prod"},
            rule_kind=Campaign.Rule.IDENTITY,
            model_name=OLD,
            model_sha256=sha(OLD),
            wave_size=2,
        ),
        user=operator,
        reason="old model",
    )
    rollout.approve(campaign.id, approver)
    [canary] = campaign.requests.all()

    with chromium_page(monkeypatch) as page:
        base = live_server.url
        login(page, base, approver.username)
        page.goto(f"{base}/campaigns/{campaign.id}/")
        page.evaluate("window.__notReloaded = true")
        rows = page.locator("#campaign-hosts")
        assert "Dispatched" in rows.inner_text()

        answer(canary)
        page.locator("#campaign-hosts tr", has_text="ocr-c1").get_by_text("Done").wait_for(timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "1-canary-done.png"), full_page=True)
        assert page.evaluate("window.__notReloaded") is True
        assert page.locator("#campaign-quarantined").inner_text() == "1000\xa0bytes"
        assert page.locator("#campaign-freed").inner_text() == "0\xa0bytes"
        assert "1000\xa0bytes in quarantine" in rows.inner_text()
        # The next wave went out; ocr-c3 now holds the last copy in the fleet and keeps it.
        assert "Dispatched" in page.locator("#campaign-hosts tr", has_text="ocr-c2").inner_text()
        assert "last copy" in page.locator("#campaign-hosts tr", has_text="ocr-c3").inner_text()

        for request in campaign.requests.exclude(id=canary.id):
            answer(request)
        page.locator("h1 + .badge", has_text="Completed").wait_for(timeout=20_000)
        page.screenshot(path=str(ARTIFACTS / "2-completed.png"), full_page=True)
        # The state changed: the page reloaded itself, once, and lost its buttons for running.
        assert page.evaluate("window.__notReloaded") is None
        assert page.get_by_role("button", name="Pause").count() == 0
        assert page.locator("#campaign-quarantined").inner_text() == "2.0\xa0KB"
        assert page.errors == []
