"""The host page's disk chart in a real browser: free space per day and the forecast line drawn
from the page's data. The screenshot (1280 px wide) goes to ``test-artifacts/host-disk/``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from models_admin.models import DiskSample, Host
from workers.schema import HostFacts, InventoryReport, ModelDirState

from .browser import artifacts, chromium_page, login
from .conftest import ingest

pytestmark = [pytest.mark.slow, pytest.mark.browser]

ARTIFACTS = artifacts("host-disk")
GB = 10**9
TOTAL = 500 * GB


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_host_page_draws_free_space_and_the_forecast_line(live_server, monkeypatch, make_host, viewer):
    host = make_host("ocr-filling", {"en_ocr_v1.gguf": 2_000})
    today = timezone.localdate()
    DiskSample.objects.bulk_create(
        DiskSample(
            host=host, day=today - timedelta(days=20 - i), disk_free=(300 - 9 * i) * GB, disk_total=TOTAL
        )
        for i in range(20)
        if i != 3  # a day without a report (before the 14-day window): a gap the line spans
    )
    facts = HostFacts(
        hostname="ocr-filling",
        model_dir="/srv/models",
        model_dir_state=ModelDirState.OK,
        disk_total=TOTAL,
        disk_free=120 * GB,
    )
    ingest(InventoryReport(host="ocr-filling", facts=facts, files=[]))
    days = Host.objects.get(pk=host.pk).forecast_days
    assert days is not None and 12 < days < 14  # 120 GB left at 9 GB a day

    with chromium_page(monkeypatch, width=1280, height=900) as page:
        login(page, live_server.url, viewer.username)
        page.goto(f"{live_server.url}/hosts/ocr-filling/")
        page.wait_for_function("() => document.getElementById('chart-disk-free').dataset.drawn")
        page.locator("#disk-chart").scroll_into_view_if_needed()
        page.screenshot(path=str(ARTIFACTS / "host-disk.png"), full_page=True)
        drawn = page.evaluate(
            """() => {
                const chart = Chart.getChart('chart-disk-free');
                const canvas = chart.canvas;
                const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
                let painted = 0;
                for (let i = 3; i < pixels.length; i += 4) if (pixels[i] > 0) painted++;
                return {
                    labels: chart.data.labels.length,
                    sets: chart.data.datasets.map(d => [d.label, d.data.filter(v => v !== null).length]),
                    painted: painted / (canvas.width * canvas.height),
                    width: canvas.getBoundingClientRect().width,
                };
            }"""
        )
        # 21 days of history (one missing) plus the line down to the day the disk is full.
        assert drawn["labels"] == 21 + int(days) + 1
        assert drawn["sets"] == [["Free", 20], ["Forecast (14-day fit)", 14 + int(days) + 1]]
        assert drawn["painted"] > 0.05 and drawn["width"] > 600  # something drawn, across the card
        text = page.inner_text("#disk-forecast")
        assert f"full in about {round(days)} days" in text
        assert "Watermark: high 85 %, low 80 % (the default)." in text  # 76 % used: not passed
        assert page.errors == []

        # A host with one report: the chart shows its point and says why there is no forecast.
        make_host("ocr-new", {})
        ingest(
            InventoryReport(host="ocr-new", facts=facts.model_copy(update={"hostname": "ocr-new"}), files=[])
        )
        page.goto(f"{live_server.url}/hosts/ocr-new/")
        page.wait_for_function("() => document.getElementById('chart-disk-free').dataset.drawn === '1'")
        assert "Forecast: not enough data." in page.inner_text("#disk-forecast")
        assert page.errors == []
