"""Days until full: the fit's rule on generated series, and the stored column the pages read."""

from __future__ import annotations

import random
from datetime import date, timedelta

import pytest

from models_admin.capacity import forecast
from models_admin.models import Host

from .conftest import disk_history, disk_inventory, ingest

GB = 1_000_000_000
TOTAL = 1_000 * GB
START = date(2026, 11, 1)


def daily(values: list[float]) -> list[tuple[date, int]]:
    return [(START + timedelta(days=i), int(v)) for i, v in enumerate(values)]


def test_a_steady_fill_gives_the_days_left_at_that_rate():
    # 10 GB a day from 300 GB: 170 GB left on day 13, so 17 days.
    result = forecast.fit(daily([300 * GB - 10 * GB * i for i in range(14)]), TOTAL)
    assert (result.days, result.note) == (17.0, "")
    assert result.slope == pytest.approx(-10 * GB)


def test_a_flat_or_growing_series_is_not_filling():
    flat = forecast.fit(daily([400 * GB] * 14), TOTAL)
    growing = forecast.fit(daily([100 * GB + 5 * GB * i for i in range(14)]), TOTAL)
    # Under 0.5 % of the disk over the window is not a trend worth a date.
    creeping = forecast.fit(daily([400 * GB - 0.2 * GB * i for i in range(14)]), TOTAL)
    assert [(r.days, r.note) for r in (flat, growing, creeping)] == [(None, forecast.NOT_FILLING)] * 3


def test_a_noisy_series_is_flagged_not_dated():
    rng = random.Random(15)
    values = [400 * GB - 2 * GB * i + rng.uniform(-60, 60) * GB for i in range(14)]
    result = forecast.fit(daily(values), TOTAL)
    assert result.slope < 0
    assert (result.days, result.note) == (None, forecast.NOISY)


def test_a_short_series_is_not_enough_data():
    result = forecast.fit(daily([300 * GB - 10 * GB * i for i in range(forecast.MIN_SAMPLES - 1)]), TOTAL)
    assert (result.days, result.note) == (None, forecast.NOT_ENOUGH)


@pytest.mark.django_db
def test_an_inventory_stores_the_forecast_and_the_fleet_sorts_by_it(make_host, client_for, viewer):
    fast, slow, flat, _new = (make_host(n, {}) for n in ("fast", "slow", "flat", "new"))
    ingest(disk_inventory("fast", disk_history(fast, 20 * GB)))  # 240 GB left at 20/day: 12 days
    ingest(disk_inventory("slow", disk_history(slow, 5 * GB)))  # 435 GB left at 5/day: 87 days
    ingest(disk_inventory("flat", disk_history(flat, 0)))
    ingest(disk_inventory("new", 300 * GB))  # one day of data

    stored = {h.name: (h.forecast_days, h.forecast_note) for h in Host.objects.all()}
    assert stored == {
        "fast": (12.0, ""),
        "slow": (87.0, ""),
        "flat": (None, forecast.NOT_FILLING),
        "new": (None, forecast.NOT_ENOUGH),
    }

    api = client_for(viewer)
    detail = api.get("/api/hosts/fast/").json()
    assert (detail["forecast_days"], detail["forecast_note"]) == (12.0, "")

    page = api.get("/", {"sort": "full"}).content.decode()
    order = [page.index(f'href="/hosts/{n}/"') for n in ("fast", "slow", "flat", "new")]
    assert order[0] < order[1] < min(order[2:])  # dated hosts first, soonest first
    assert "12 d" in page and forecast.NOT_FILLING in page and forecast.NOT_ENOUGH in page
    descending = api.get("/", {"sort": "-full"}).content.decode()
    assert descending.index('href="/hosts/slow/"') < descending.index('href="/hosts/fast/"')
    assert max(descending.index(f'href="/hosts/{n}/"') for n in ("slow", "fast")) < min(
        descending.index(f'href="/hosts/{n}/"') for n in ("flat", "new")
    )
