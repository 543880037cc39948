"""The two-person rule in a real browser, with a real agent and a real ingest worker on Redis.

An operator proposes deleting a host's ``old_`` model, an approver approves it, the order
travels to the agent, the agent quarantines the file on disk, and the outcome comes back
through the ingest worker into the pages and the audit log. Screenshots of every step go to
``test-artifacts/browser/`` for a human to look at.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from models_admin.models import Host, PruneRequest

from .browser import artifacts, chromium_page, login
from .processes import Fleet, running_fleet, unique_host_name

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = artifacts("browser")
OLD_MODEL = "old_fr_ocr_v1.bin"
# Random, so a quarantined copy can only match if every byte travelled.
OLD_BYTES = os.urandom(300_000)


@pytest.fixture
def fleet(transactional_db, tmp_path: Path) -> Iterator[Fleet]:
    """One accepted OCR host with its real agent worker, plus the dashboard's real ingest worker."""
    models = tmp_path / "models"
    (models / "layout").mkdir(parents=True)
    (models / OLD_MODEL).write_bytes(OLD_BYTES)
    (models / "en_ocr_v2.gguf").write_bytes(os.urandom(200_000))
    (models / "Llama-3.2-3B-Instruct-Q4_K_M.gguf").write_bytes(b"GGUF" + os.urandom(1000))
    with running_fleet(unique_host_name("ocr-browser"), models, tmp_path) as running:
        running.wait_for(
            f"{running.host}'s first inventory",
            lambda: Host.objects.filter(name=running.host, file_count=3).exists(),
        )
        call_command("accept_host", running.host, stdout=open(os.devnull, "w"))  # noqa: SIM115
        yield running


@pytest.fixture
def browser_page(monkeypatch):
    with chromium_page(monkeypatch) as page:
        yield page


def _shot(page, name: str) -> None:
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_operator_proposes_approver_approves_and_the_file_is_quarantined(
    live_server, fleet: Fleet, browser_page, operator, approver
):
    page, base = browser_page, live_server.url

    # The operator sees the fleet and the host, and proposes deleting the old model.
    login(page, base, operator.username)
    page.get_by_role("link", name=fleet.host).wait_for()
    _shot(page, "1-fleet")
    page.get_by_role("link", name=fleet.host).click()
    page.wait_for_url(f"{base}/hosts/{fleet.host}/")
    page.get_by_label(f"select {OLD_MODEL}").check()
    page.fill("input[name=reason]", "superseded by fr_ocr_v2")
    _shot(page, "2-host-selected")
    page.get_by_role("button", name="Propose deletion").click()
    page.wait_for_url(re.compile(r".*/requests/[0-9a-f-]{36}/$"))
    request_url = page.url
    request_id = uuid.UUID(request_url.rstrip("/").rsplit("/", 1)[1])
    assert PruneRequest.objects.get(id=request_id).state == PruneRequest.State.PROPOSED
    assert page.get_by_role("button", name="Approve").count() == 0, "an operator cannot approve"
    _shot(page, "3-request-proposed")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r".*/accounts/login/.*"))

    # The approver, a second person, approves; the order goes to the host's agent.
    login(page, base, approver.username)
    page.goto(request_url)
    page.fill("input[name=comment]", "ok, fr v2 is live")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(request_url)
    _shot(page, "4-request-approved")

    fleet.wait_for(
        "the agent's outcome",
        lambda: PruneRequest.objects.get(id=request_id).state == PruneRequest.State.COMPLETED,
    )
    page.reload()
    assert page.get_by_text("Completed").first.is_visible()
    assert page.get_by_text("quarantined").first.is_visible()
    _shot(page, "5-request-completed")

    # On disk: gone from the model folder, kept byte for byte in the quarantine.
    assert not (fleet.models_dir / OLD_MODEL).exists()
    quarantined = fleet.models_dir / ".ocrdash-quarantine" / request_id.hex / OLD_MODEL
    assert quarantined.read_bytes() == OLD_BYTES
    assert (fleet.models_dir / "en_ocr_v2.gguf").exists()

    # The audit log names who proposed, who approved and what happened to the file.
    page.goto(f"{base}/audit/?host={fleet.host}")
    table = page.locator("table").first
    for text in (
        "Request proposed",
        "Request approved",
        "Item outcome",
        operator.username,
        approver.username,
    ):
        # Visible text only: the raw details of each row sit folded in a <details>.
        shown = table.get_by_text(text).filter(visible=True)
        assert shown.first.is_visible(), f"{text!r} missing from the audit log"
    _shot(page, "6-audit")
