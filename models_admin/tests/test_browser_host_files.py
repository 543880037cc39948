"""The host page's model-files table follows the host without a reload, in a real browser with a
real agent and a real ingest worker on Redis.

After *Inventory now* answered, a file that appeared on the host is in the table (and the
file the operator had ticked is still ticked); after a prune answered, the pruned file is gone
and the totals say so, all on the page that was open.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from models_admin.approvals import workflow
from models_admin.models import Host, ModelFile, PruneRequest

from .browser import artifacts, chromium_page, login
from .processes import Fleet, running_fleet, unique_host_name

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = artifacts("browser-host-files")


@pytest.fixture
def fleet(transactional_db, tmp_path: Path) -> Iterator[Fleet]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v2.gguf").write_bytes(os.urandom(100_000))
    (models / "old_fr_ocr_v1.bin").write_bytes(os.urandom(50_000))
    with running_fleet(unique_host_name("ocr-files"), models, tmp_path) as running:
        running.wait_for(
            "the first inventory", lambda: Host.objects.filter(name=running.host, file_count=2).exists()
        )
        call_command("accept_host", running.host, stdout=open(os.devnull, "w"))  # noqa: SIM115
        yield running


def file_rows(page) -> list[str]:
    return [row.strip() for row in page.locator("[data-live-part=files] tr.file-row .path").all_inner_texts()]


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_files_table_follows_an_inventory_and_a_prune_without_a_reload(
    live_server, fleet: Fleet, monkeypatch, operator, approver
):
    with chromium_page(monkeypatch) as page:
        base = live_server.url
        login(page, base, operator.username)
        page.goto(f"{base}/hosts/{fleet.host}/")
        assert file_rows(page) == ["en_ocr_v2.gguf", "old_fr_ocr_v1.bin"]
        (fleet.models_dir / "de_ocr_v3.onnx").write_bytes(os.urandom(70_000))
        page.get_by_role("button", name="Inventory now").click()
        page.wait_for_url(f"{base}/hosts/{fleet.host}/")
        page.evaluate("window.__notReloaded = true")  # the POST redirected here; from now on no reload
        page.locator("input[data-key='llm:en_ocr_v2.gguf']").check()

        page.locator("[data-live-part=files] .path", has_text="de_ocr_v3.onnx").wait_for(timeout=60_000)
        page.screenshot(path=str(ARTIFACTS / "1-after-inventory.png"), full_page=True)
        assert file_rows(page) == ["de_ocr_v3.onnx", "en_ocr_v2.gguf", "old_fr_ocr_v1.bin"]
        # The ticked file stays ticked across the swap (it has a new id in the new inventory).
        assert page.locator("input[data-key='llm:en_ocr_v2.gguf']").is_checked()
        assert page.locator("#selection-summary").inner_text().startswith("1 file")
        assert "3" in page.locator("[data-live-part=totals] .value").first.inner_text()

        # A prune proposed, approved and answered while the page stays open.
        host = Host.objects.get(name=fleet.host)
        old = ModelFile.objects.get(snapshot=host.current_snapshot, path="old_fr_ocr_v1.bin")
        request = workflow.propose(host=host, files=[old], reason="superseded", user=operator)
        workflow.approve(request.id, approver)
        fleet.wait_for(
            "the prune's answer",
            lambda: PruneRequest.objects.filter(id=request.id, state=PruneRequest.State.COMPLETED).exists(),
        )
        page.wait_for_function(
            "() => ![...document.querySelectorAll('[data-live-part=files] tr.file-row .path')]"
            ".some(e => e.textContent.trim() === 'old_fr_ocr_v1.bin')",
            timeout=60_000,
        )
        page.screenshot(path=str(ARTIFACTS / "2-after-prune.png"), full_page=True)
        assert file_rows(page) == ["de_ocr_v3.onnx", "en_ocr_v2.gguf"]
        assert page.locator("[data-live-part=totals] .value").first.inner_text().strip() == "2"
        assert page.locator("input[data-key='llm:en_ocr_v2.gguf']").is_checked()
        assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
        assert not page.errors, page.errors
