"""The reports pages in a real browser: the charts draw from the page's data, the settings
form saves. Screenshots go to ``test-artifacts/reports/`` for a human to look at."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from models_admin import tasks
from models_admin.models import PruneRequest

from .browser import artifacts, chromium_page, login
from .history_factories import host, prune, snapshot

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = artifacts("reports")
CHARTS = ("chart-disk", "chart-reclaimed", "chart-models", "chart-requests")


@pytest.fixture
def page(monkeypatch):
    with chromium_page(monkeypatch, width=1400, height=1000) as tab:
        yield tab


def _history(operator, approver) -> None:
    """Three hosts over the last 60 days, with prunes and decisions of every kind."""
    now = timezone.now().replace(minute=0, second=0, microsecond=0)
    for n, name in enumerate(("ocr-east-1", "ocr-west-1", "ocr-lab")):
        h = host(name)
        files = {
            f"models/base_{n}.gguf": 2_000_000_000,
            "models/Llama-3.2-3B-Instruct-Q4_K_M.gguf": 2_019_000_000,
        }
        for day in range(60, -1, -3):
            files[f"models/old_v{day}.bin"] = 50_000_000 * (n + 1)
            if day % 9 == 0:
                files = {p: s for p, s in files.items() if not p.startswith("models/old_v")}
            snapshot(h, now - timedelta(days=day, hours=n), files)
        for week in range(8):
            created = now - timedelta(days=7 * week + n + 1)
            state = [PruneRequest.State.COMPLETED, PruneRequest.State.REJECTED, PruneRequest.State.EXPIRED][
                (week + n) % 3
            ]
            done = state == PruneRequest.State.COMPLETED
            prune(
                h,
                [
                    (
                        f"models/old_w{week}.bin",
                        150_000_000,
                        "quarantined" if done else "pending",
                        150_000_000 * done,
                    )
                ],
                created_at=created,
                requested_by=operator,
                decided_by=approver if state != PruneRequest.State.EXPIRED else None,
                decided_at=created + timedelta(hours=2) if state != PruneRequest.State.EXPIRED else None,
                finished_at=created + timedelta(hours=3),
                state=state,
                comment="superseded" if done else "",
            )
        prune(h, [("models/old_now.bin", 1, "pending", 0)], created_at=now, state=PruneRequest.State.PROPOSED)


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_charts_draw_the_numbers_of_the_page(live_server, page, viewer, operator, approver):
    _history(operator, approver)
    login(page, live_server.url, viewer.username)

    page.goto(f"{live_server.url}/reports/")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-requests')")
    page.screenshot(path=str(ARTIFACTS / "reports.png"), full_page=True)

    drawn = page.evaluate(
        """ids => ids.map(id => {
            const chart = Chart.getChart(id);
            return [chart.data.datasets.length, chart.data.datasets.reduce((s, d) => s + d.data.length, 0)];
        })""",
        list(CHARTS),
    )
    data = page.evaluate("() => JSON.parse(document.getElementById('report-data').textContent)")
    assert drawn[0] == [3, 3 * len(data["days"])]  # one stacked area per host
    assert drawn[1] == [2, 2 * len(data["weeks"])]  # freed on disk and in quarantine, stacked
    assert drawn[2] == [1, 3]
    assert drawn[3] == [4, 4 * len(data["request_weeks"])]
    assert page.errors == []

    # The host field suggests from what is typed (host_picker.js), and the pick narrows the page.
    page.fill("#id_host", "west")
    page.wait_for_function("() => document.querySelectorAll('#host-suggestions option').length > 0")
    suggested = page.eval_on_selector_all("#host-suggestions option", "os => os.map(o => o.value)")
    assert suggested == ["ocr-west-1"]
    page.fill("#id_host", "ocr-west-1")
    page.click("#range-form button[type=submit]")
    page.wait_for_function("() => window.Chart && Chart.getChart('chart-models')")
    assert page.eval_on_selector_all("#selected-hosts input:checked", "bs => bs.map(b => b.value)") == [
        "ocr-west-1"
    ]
    assert page.evaluate("() => Chart.getChart('chart-models').data.labels") == ["ocr-west-1"]
    page.screenshot(path=str(ARTIFACTS / "reports-one-host.png"), full_page=True)

    page.goto(f"{live_server.url}/reports/deletions/")
    page.screenshot(path=str(ARTIFACTS / "deletions.png"))
    page.goto(f"{live_server.url}/hosts/ocr-lab/timeline/")
    page.screenshot(path=str(ARTIFACTS / "timeline.png"))
    assert page.errors == []


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_an_approver_changes_the_fleet_schedule_in_the_page(live_server, page, approver):
    login(page, live_server.url, approver.username)

    page.goto(f"{live_server.url}/settings/")
    page.fill("#fleet-minutes", "240")
    page.click("#h-fleet ~ form button[type=submit]")
    page.wait_for_url(f"{live_server.url}/settings/")

    assert "every 4 hours" in page.inner_text("#fleet-now")
    assert "saved" in page.inner_text("main .alert")
    page.screenshot(path=str(ARTIFACTS / "settings.png"))
    assert PeriodicTask.objects.get(task=tasks.FLEET_INVENTORY_TASK).interval.every == 240
