"""Heartbeats keep the daily disk series between inventories, at a statement an hour per host at most."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from models_admin import ingest as ingest_module
from models_admin.capacity import forecast, usage
from models_admin.ingest import ingest_heartbeats, ingest_report
from models_admin.models import DiskSample, Host
from workers.schema import HeartbeatReport, ModelDirState

from .conftest import disk_inventory, ingest, signed_report

pytestmark = pytest.mark.django_db
GB = 1_000_000_000
TOTAL = 1_000 * GB


def beat(host: str, sent_at: datetime, free: int | None) -> HeartbeatReport:
    return HeartbeatReport(
        host=host,
        sent_at=sent_at,
        interval_seconds=30,
        model_dir_state=ModelDirState.OK,
        disk_free=free,
        disk_total=TOTAL if free is not None else None,
    )


def at(day: int, hour: int, minute: int = 0) -> datetime:
    """A moment of a fixed November day in the dashboard's zone (the day a point is counted in)."""
    return timezone.make_aware(datetime(2026, 11, day, hour, minute))


def apply(host: str, now: datetime, free: int | None) -> str:
    """One beat through ingest's heartbeat step at ``now`` (its send time just before)."""
    status, _ = ingest_module.apply_heartbeat(beat(host, now - timedelta(seconds=1), free), now, None)
    return status


def points(host: Host) -> list[tuple[str, int, datetime]]:
    return [
        (s.day.isoformat(), s.disk_free, s.at) for s in DiskSample.objects.filter(host=host).order_by("day")
    ]


def test_the_first_beat_with_disk_figures_adds_one_statement_and_the_next_beats_none(make_host) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the counts are PostgreSQL's; SQLite takes the ORM's statements")
    host = make_host("ocr-1", {})
    now = timezone.now()
    # The key is read and cached by a first beat; a beat without disk figures has no point.
    assert ingest_report(signed_report(beat("ocr-1", now - timedelta(seconds=3), None))).status == "accepted"
    assert not DiskSample.objects.filter(host=host).exists()

    with CaptureQueriesContext(connection) as first:
        assert ingest_report(signed_report(beat("ocr-1", now - timedelta(seconds=2), 400 * GB))).status == (
            "accepted"
        )
    with CaptureQueriesContext(connection) as second:
        assert ingest_report(signed_report(beat("ocr-1", now - timedelta(seconds=1), 399 * GB))).status == (
            "accepted"
        )
    # The beat's UPDATE, and for the hour's first beat the day's point (one INSERT ... ON CONFLICT).
    assert [q["sql"].split()[0] for q in first.captured_queries] == ["UPDATE", "INSERT"]
    assert [q["sql"].split()[0] for q in second.captured_queries] == ["UPDATE"]
    [(day, free, _)] = points(host)
    assert (day, free) == (timezone.localdate().isoformat(), 400 * GB)
    assert Host.objects.get(pk=host.pk).disk_free == 399 * GB  # the host's own figure is every beat's


def test_a_batchs_beats_add_one_statement_for_all_their_points(make_host) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the counts are PostgreSQL's; SQLite takes the ORM's statements")
    names = [f"ocr-{i}" for i in range(4)]
    made = [make_host(name, {}) for name in names]
    now = timezone.now()
    for name in names:  # the keys read and cached
        assert ingest_report(signed_report(beat(name, now - timedelta(seconds=3), None))).status == "accepted"

    def batch(sent_at, free):
        return [(signed_report(beat(name, sent_at, free + i * GB)), None) for i, name in enumerate(names)]

    with CaptureQueriesContext(connection) as first:
        assert {r.status for r in ingest_heartbeats(batch(now - timedelta(seconds=2), 400 * GB))} == {
            "accepted"
        }
    with CaptureQueriesContext(connection) as second:
        assert {r.status for r in ingest_heartbeats(batch(now - timedelta(seconds=1), 300 * GB))} == {
            "accepted"
        }
    # The batch's UPDATE, and for the hour's first beats one INSERT of every host's point.
    assert [q["sql"].split()[0] for q in first.captured_queries] == ["UPDATE", "INSERT"]
    assert [q["sql"].split()[0] for q in second.captured_queries] == ["UPDATE"]
    assert [[free for _, free, _ in points(h)] for h in made] == [[(400 + i) * GB] for i in range(4)]


def test_an_hour_later_a_beat_rewrites_the_point_only_if_its_value_changed(make_host) -> None:
    host = make_host("ocr-1", {})
    assert apply("ocr-1", at(2, 8), 400 * GB) == "accepted"
    assert apply("ocr-1", at(2, 8, 30), 390 * GB) == "accepted"  # within the hour: not sent
    assert points(host) == [("2026-11-02", 400 * GB, at(2, 8))]

    apply("ocr-1", at(2, 9, 1), 400 * GB)  # sent, but the day's row already says so: nothing written
    assert points(host) == [("2026-11-02", 400 * GB, at(2, 8))]
    apply("ocr-1", at(2, 10, 2), 380 * GB)
    assert points(host) == [("2026-11-02", 380 * GB, at(2, 10, 2))]


def test_a_new_day_gets_its_point_at_its_first_beat(make_host) -> None:
    host = make_host("ocr-1", {})
    apply("ocr-1", at(2, 23, 40), 400 * GB)
    apply("ocr-1", at(3, 0, 10), 399 * GB)  # 30 minutes later, but another day
    assert [(d, f) for d, f, _ in points(host)] == [("2026-11-02", 400 * GB), ("2026-11-03", 399 * GB)]


def test_the_latest_report_of_the_day_wins_whoever_sent_it(make_host) -> None:
    host = make_host("ocr-1", {})
    usage.record_disk(host, 400 * GB, TOTAL, at(2, 9))  # an inventory's point
    apply("ocr-1", at(2, 10), 390 * GB)
    assert points(host) == [("2026-11-02", 390 * GB, at(2, 10))]
    usage.record_disk(Host.objects.get(pk=host.pk), 385 * GB, TOTAL, at(2, 11))
    # Another ingest process (or a restart) knows nothing of this host: a beat it ingests
    # late, with an older time than the inventory's point, does not replace that point.
    usage.forget_heartbeat_samples()
    apply("ocr-1", at(2, 10, 59), 395 * GB)
    assert points(host) == [("2026-11-02", 385 * GB, at(2, 11))]


def test_a_retired_hosts_beat_and_a_beat_without_figures_leave_the_series_alone(make_host) -> None:
    retired = make_host("old", {}, status=Host.Status.RETIRED)
    active = make_host("ocr-1", {})
    assert apply("old", at(2, 8), 400 * GB) == "duplicate"
    assert apply("ocr-1", at(2, 8), None) == "accepted"
    assert not DiskSample.objects.filter(host__in=[retired, active]).exists()


def test_the_days_between_inventories_come_from_heartbeats_and_the_next_inventory_dates_the_disk(
    make_host,
) -> None:
    host = make_host("ocr-1", {})
    today = timezone.localdate()
    # Thirteen days without an inventory, a beat each day at noon, 20 GB less free every day.
    for days_ago in range(13, 0, -1):
        noon = timezone.make_aware(datetime.combine(today - timedelta(days=days_ago), datetime.min.time()))
        apply("ocr-1", noon + timedelta(hours=12), 500 * GB - 20 * GB * (13 - days_ago))
    assert DiskSample.objects.filter(host=host).count() == 13
    ingest(disk_inventory("ocr-1", 240 * GB))  # 260 GB in 13 days, 240 GB left: 12 days
    host.refresh_from_db()
    assert (host.forecast_days, host.forecast_note) == (12.0, "")
    assert forecast.for_host(host).days == 12.0
