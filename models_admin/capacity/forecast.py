"""Days until a host's disk is full, from a straight line through its daily free-space series.

The rule (one place; README "Capacity" says the same):

* the window is the last ``WINDOW_DAYS`` (14) days of ``DiskSample`` rows ending at the newest;
* fewer than ``MIN_SAMPLES`` (5) daily points: "not enough data";
* least squares ``free = a + b * day``; when the fitted drop over the window is under
  ``MIN_DROP_FRACTION`` (0.5 %) of the disk (or free space grows): "not filling";
* when the line explains less than ``MIN_R2`` (0.6) of the variance: "too noisy";
* otherwise days until full = the fitted free space at the newest day / the daily drop.

It runs when a day's sample is recorded (one SELECT of at most 14 rows) and its result is stored
on the host, so the fleet page reads and sorts a column instead of fitting per request.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import NamedTuple, Protocol, TypeVar

from ..models import DiskSample, Host

WINDOW_DAYS = 14
MIN_SAMPLES = 5
MIN_DROP_FRACTION = 0.005
MIN_R2 = 0.6

NOT_ENOUGH = "not enough data"
NOT_FILLING = "not filling"
NOISY = "too noisy"


class _Dated(Protocol):
    @property
    def day(self) -> date: ...


S = TypeVar("S", bound=_Dated)


@dataclass(frozen=True)
class Forecast:
    """``days`` is set only when ``note`` is empty; ``slope`` (bytes/day) and ``intercept``
    (bytes at ``origin``) describe the fitted line for the host page's chart."""

    days: float | None
    note: str
    slope: float = 0.0
    intercept: float = 0.0
    origin: date | None = None


def fit(points: Sequence[tuple[date, int]], disk_total: int) -> Forecast:
    """The forecast for ``points`` (day, free bytes), oldest first, on a disk of ``disk_total``."""
    if len(points) < MIN_SAMPLES:
        return Forecast(None, NOT_ENOUGH)
    origin = points[0][0]
    xs = [float((d - origin).days) for d, _ in points]
    ys = [float(v) for _, v in points]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxx = sum((x - mx) ** 2 for x in xs)
    if sxx == 0:
        return Forecast(None, NOT_ENOUGH)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx
    intercept = my - slope * mx
    span = xs[-1] - xs[0]
    if slope >= 0 or -slope * span < MIN_DROP_FRACTION * max(disk_total, 1):
        return Forecast(None, NOT_FILLING, slope, intercept, origin)
    syy = sum((y - my) ** 2 for y in ys)
    r2 = 1.0 if syy == 0 else (slope * slope * sxx) / syy
    if r2 < MIN_R2:
        return Forecast(None, NOISY, slope, intercept, origin)
    free_now = max(intercept + slope * xs[-1], 0.0)
    return Forecast(round(free_now / -slope, 1), "", slope, intercept, origin)


def series(host: Host) -> list[DiskSample]:
    """The window's samples, oldest first: one SELECT of at most 14 rows on the (host, day) index."""
    return window(list(DiskSample.objects.filter(host=host).order_by("-day")[:WINDOW_DAYS]))


def window(newest_first: Sequence[S]) -> list[S]:
    """The samples (anything with a ``day``) of the window ending at the newest, oldest first."""
    if not newest_first:
        return []
    since = newest_first[0].day - timedelta(days=WINDOW_DAYS - 1)
    return [s for s in reversed(newest_first[:WINDOW_DAYS]) if s.day >= since]


class Sample(NamedTuple):
    day: date
    disk_free: int
    disk_total: int


def of_samples(newest_first: Sequence[tuple[date, int, int]]) -> Forecast:
    """The forecast from (day, disk_free, disk_total) rows, newest first (ingest reads them in
    the same statement as the day's upsert)."""
    samples = window([Sample(*row) for row in newest_first])
    if not samples:
        return Forecast(None, NOT_ENOUGH)
    return fit([(s.day, s.disk_free) for s in samples], samples[-1].disk_total)


def for_host(host: Host) -> Forecast:
    samples = series(host)
    if not samples:
        return Forecast(None, NOT_ENOUGH)
    return fit([(s.day, s.disk_free) for s in samples], samples[-1].disk_total)


def host_fields(host: Host) -> dict[str, object]:
    """The host columns that hold the forecast (set by ingest with the report's other columns)."""
    return fields(for_host(host))


def fields(forecast: Forecast) -> dict[str, object]:
    return {"forecast_days": forecast.days, "forecast_note": forecast.note}


CHART_DAYS = 90  # the host page's chart: the last 90 daily points
CHART_AHEAD_DAYS = 60  # the forecast line is drawn at most this far past the newest day


def chart_data(host: Host) -> dict[str, object] | None:
    """The host page's disk chart, one label per day: the daily free space (null on days without
    a report) and, when there is a forecast, the fitted line from the window's first day to the
    day it reaches zero (at most ``CHART_AHEAD_DAYS`` past the newest day). None when there is no
    sample yet. Two SELECTs of at most 90 and 14 rows."""
    samples = list(DiskSample.objects.filter(host=host).order_by("-day")[:CHART_DAYS])[::-1]
    if not samples:
        return None
    result = for_host(host)
    first, newest = samples[0].day, samples[-1].day
    end = newest
    if result.days is not None:
        end = newest + timedelta(days=min(CHART_AHEAD_DAYS, int(result.days) + 1))
    days = [first + timedelta(days=i) for i in range((end - first).days + 1)]
    by_day = {s.day: s.disk_free for s in samples}
    line: list[int | None] = []
    for day in days:
        if result.days is None or result.origin is None or day < result.origin:
            line.append(None)
        else:
            line.append(max(round(result.intercept + result.slope * (day - result.origin).days), 0))
    return {
        "days": [d.isoformat() for d in days],
        "free": [by_day.get(d) for d in days],
        "forecast": line if result.days is not None else [],
        "total": samples[-1].disk_total,
        "full_in": result.days,
        "note": result.note,
    }
