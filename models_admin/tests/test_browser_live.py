"""Live feedback in a real browser, with a real agent and a real ingest worker on Redis.

An operator presses *Inventory now* on a host that just got a large model file: without
reloading, the host page shows the order asked, then a progress bar that moves while the
agent hashes the file for the first time, then the result (files and bytes).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.core.management import call_command

from models_admin.models import Host, HostAction

from .browser import artifacts, chromium_page, login
from .processes import Fleet, running_fleet, unique_host_name

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = artifacts("browser-live")
# Sparse: gigabytes to hash (several seconds), no disk space used.
BIG_SIZE = 3 * 1024**3


@pytest.fixture
def fleet(transactional_db, tmp_path: Path) -> Iterator[Fleet]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v2.gguf").write_bytes(os.urandom(100_000))
    with running_fleet(
        unique_host_name("ocr-live"), models, tmp_path, agent_env={"OCRDASH_PROGRESS_SECONDS": "0.3"}
    ) as running:
        running.wait_for(
            "the first inventory", lambda: Host.objects.filter(name=running.host, file_count=1).exists()
        )
        call_command("accept_host", running.host, stdout=open(os.devnull, "w"))  # noqa: SIM115
        yield running


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_inventory_now_shows_a_moving_progress_bar_then_its_result_without_a_reload(
    live_server, fleet: Fleet, monkeypatch, operator
):
    with open(fleet.models_dir / "big_model_v4.gguf", "wb") as big:
        big.truncate(BIG_SIZE)
    with chromium_page(monkeypatch) as page:
        base = live_server.url
        login(page, base, operator.username)
        page.goto(f"{base}/hosts/{fleet.host}/")
        page.evaluate("window.__notReloaded = true")
        page.get_by_role("button", name="Inventory now").click()
        page.wait_for_url(f"{base}/hosts/{fleet.host}/")
        page.evaluate("window.__notReloaded = true")  # the POST redirected here; from now on no reload
        panel = page.locator("#host-live-card")
        panel.get_by_text("waiting for the host").or_(panel.locator("progress")).first.wait_for()
        page.screenshot(path=str(ARTIFACTS / "1-asked.png"), full_page=True)

        seen: list[int] = []
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            bar = panel.locator("progress")
            if bar.count():
                value = int(bar.first.get_attribute("value") or 0)
                if not seen or seen[-1] != value:
                    seen.append(value)
                    if len(seen) == 2:
                        page.screenshot(path=str(ARTIFACTS / "2-progress.png"), full_page=True)
            if panel.get_by_text("2 file(s)").count():
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"no result on the page; progress seen: {seen}\n" + fleet.logs[1].read_text()[-3000:])
        page.screenshot(path=str(ARTIFACTS / "3-done.png"), full_page=True)
        assert page.evaluate("window.__notReloaded") is True, "the page reloaded"
        assert seen == sorted(seen), f"the bar went back: {seen}"
        assert len(set(seen)) >= 2, f"the bar did not move: {seen}"
        assert panel.get_by_text("done").first.is_visible()
        assert "2 file(s), 3.0 GB" in panel.inner_text().replace("\xa0", " ")
        assert not page.errors, page.errors
    action = HostAction.objects.get(host__name=fleet.host)
    assert action.state == HostAction.State.DONE and action.asked_by == operator.username
