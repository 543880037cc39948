"""Compaction thins old snapshots without changing what the reports say."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from models_admin.inventory import compaction, reports
from models_admin.inventory.compaction import Retention
from models_admin.models import AuditEvent, ModelFile, PruneRequest, Snapshot

from .history_factories import at, host, prune, snapshot

pytestmark = pytest.mark.django_db

NOW = at("2026-06-30 12:00")
# Daily thinning before 2026-05-31 12:00, weekly before 2026-04-01 12:00.
RETENTION = Retention(daily_after_days=30, weekly_after_days=90)


def _history():
    """Host ocr-a with several inventories a day in every zone of the retention."""
    a = host("ocr-a")
    day = date(2026, 3, 2)  # a Monday, in the weekly zone
    size = 100
    while day <= date(2026, 6, 29):
        for hour in (6, 12, 18):
            size += 1
            snapshot(a, at(f"{day} {hour:02d}:00"), {"en.gguf": 1000, f"v{day.day % 3}.bin": size})
        day += timedelta(days=1)
    return a


def _report_numbers(daily_from: date):
    """What the reports page would show: the daily values from ``daily_from`` on, the
    week-end values over the whole history, reclaimed space and the deletions audit."""
    series = reports.disk_per_day(date(2026, 3, 1), date(2026, 6, 30))
    week_ends = {d: v for d, v in zip(series.days, series.fleet_bytes, strict=True) if d.weekday() == 6}
    daily = {d: v for d, v in zip(series.days, series.fleet_bytes, strict=True) if d >= daily_from}
    reclaimed = reports.reclaimed_per_week(date(2026, 3, 1), date(2026, 6, 30))
    audit = [
        reports.deletion_row(i)
        for i in reports.deletions(reports.DeletionFilter(date(2026, 3, 1), NOW.date()))
    ]
    return week_ends, daily, series.files, reclaimed, audit


def test_compaction_keeps_the_reports_numbers():
    a = _history()
    prune(
        a,
        [("old.bin", 10, "deleted", 10)],
        created_at=at("2026-03-10 09:00"),
        finished_at=at("2026-03-11 09:00"),
    )
    before = _report_numbers(daily_from=date(2026, 4, 1))
    count_before = Snapshot.objects.count()

    totals = compaction.compact_snapshots(now=NOW, retention=RETENTION)

    after = _report_numbers(daily_from=date(2026, 4, 1))
    assert after[0] == before[0]  # every week's end
    assert after[1] == before[1]  # every day of the daily zone
    assert after[3:] == before[3:]
    assert totals["snapshots_deleted"] > 0
    assert Snapshot.objects.count() == count_before - totals["snapshots_deleted"]
    assert totals["files_deleted"] == 2 * totals["snapshots_deleted"]


def test_old_days_keep_their_last_snapshot_old_weeks_theirs_and_recent_history_stays_whole():
    a = _history()

    compaction.compact_snapshots(now=NOW, retention=RETENTION)

    taken = list(a.snapshots.order_by("taken_at").values_list("taken_at", flat=True))
    weekly = [t for t in taken if t < at("2026-04-01 12:00")]
    daily = [t for t in taken if at("2026-04-01 12:00") <= t < at("2026-05-31 12:00")]
    recent = [t for t in taken if t >= at("2026-05-31 12:00")]
    # Sunday 18:00 of each full week, and the last before the weekly cutoff (Wed 06:00).
    assert weekly[:2] == [at("2026-03-08 18:00"), at("2026-03-15 18:00")]
    assert weekly[-1] == at("2026-04-01 06:00")
    assert all(t.hour == 18 for t in daily[:-1]) and len(daily) == 61
    assert len(recent) == 30 * 3 - 1  # 2026-05-31 12:00 up to 2026-06-29 18:00


def test_it_never_deletes_the_current_snapshot_or_one_a_request_points_at():
    a = host("ocr-a")
    shown = snapshot(a, at("2026-01-05 06:00"), {"x": 1})  # an approver saw this one
    snapshot(a, at("2026-01-05 12:00"), {"x": 2})
    snapshot(a, at("2026-01-05 18:00"), {"x": 3})
    current = snapshot(a, at("2026-01-06 06:00"), {"x": 4})
    snapshot(a, at("2026-01-06 06:01"), {"x": 4})  # newest, but not the one ingest marked current
    a.current_snapshot = current
    a.save(update_fields=["current_snapshot"])
    prune(
        a,
        [("x", 1, "pending", 0)],
        created_at=at("2026-01-05 07:00"),
        state=PruneRequest.State.PROPOSED,
        snap=shown,
    )

    compaction.compact_snapshots(now=NOW, retention=RETENTION)

    left = set(a.snapshots.values_list("taken_at", flat=True))
    # One week in the weekly zone: only its last (06:01) would stay, were the others not held.
    assert left == {at("2026-01-05 06:00"), at("2026-01-06 06:00"), at("2026-01-06 06:01")}
    assert PruneRequest.objects.get().snapshot == shown


def test_identical_neighbours_collapse_into_the_older_one():
    a = host("ocr-a")
    first = snapshot(a, at("2026-05-01 10:00"), {"x": 1}, last_seen_at=at("2026-05-01 20:00"))
    snapshot(a, at("2026-05-02 08:00"), {"x": 2})
    snapshot(a, at("2026-05-02 10:00"), {"x": 1}, last_seen_at=at("2026-05-02 22:00"))
    snapshot(a, at("2026-06-29 10:00"), {"y": 1})
    daily_before = reports.disk_per_day(date(2026, 5, 1), date(2026, 5, 5)).fleet_bytes

    # In the daily zone, May 2 08:00 is not the last of its day and goes; then May 1 and
    # May 2 10:00 are neighbours with the same inventory and become one row standing for both.
    compaction.compact_snapshots(now=NOW, retention=RETENTION)

    first.refresh_from_db()
    assert list(a.snapshots.order_by("taken_at").values_list("taken_at", flat=True)) == [
        at("2026-05-01 10:00"),
        at("2026-06-29 10:00"),
    ]
    assert (first.last_seen_at, first.seen_count) == (at("2026-05-02 22:00"), 2)
    assert reports.disk_per_day(date(2026, 5, 1), date(2026, 5, 5)).fleet_bytes == daily_before


def test_it_writes_one_audit_event_per_compacted_host_and_leaves_the_audit_alone():
    _history()
    host("ocr-b")  # no history: nothing to do, no event
    AuditEvent.record(AuditEvent.Action.REQUEST_APPROVED, actor="alice", host="ocr-a")
    audit_before = AuditEvent.objects.count()
    files_before = ModelFile.objects.count()

    totals = compaction.compact_snapshots(now=NOW, retention=RETENTION, actor="system")

    events = AuditEvent.objects.filter(action=AuditEvent.Action.SNAPSHOTS_COMPACTED)
    assert AuditEvent.objects.count() == audit_before + 1
    (event,) = events
    assert event.host == "ocr-a"
    assert event.details["snapshots_deleted"] == totals["snapshots_deleted"]
    assert event.details["files_deleted"] == files_before - ModelFile.objects.count()
    assert (event.details["daily_after_days"], event.details["weekly_after_days"]) == (30, 90)


def test_a_second_run_finds_nothing_to_do():
    _history()
    compaction.compact_snapshots(now=NOW, retention=RETENTION)

    again = compaction.compact_snapshots(now=NOW, retention=RETENTION)

    assert again == {
        "hosts": 0,
        "snapshots_deleted": 0,
        "identical_merged": 0,
        "files_deleted": 0,
        "received_reports_deleted": 0,
    }


def test_retention_refuses_nonsense():
    with pytest.raises(ValueError):
        Retention(daily_after_days=0)
    with pytest.raises(ValueError):
        Retention(daily_after_days=60, weekly_after_days=30)


def test_received_reports_older_than_their_retention_are_deleted(db):
    from django.utils import timezone

    from models_admin.inventory.compaction import forget_received_reports
    from models_admin.models import ReceivedReport

    now = timezone.now()
    old = [
        ReceivedReport(
            report_id=f"old-{i}", kind="inventory", status="accepted", received_at=now - timedelta(days=40)
        )
        for i in range(25)
    ]
    ReceivedReport.objects.bulk_create(
        [*old, ReceivedReport(report_id="new", kind="inventory", status="accepted", received_at=now)]
    )
    events = AuditEvent.objects.count()

    deleted = forget_received_reports(now, Retention(received_reports_days=30), batch=10)

    assert deleted == 25
    assert list(ReceivedReport.objects.values_list("report_id", flat=True)) == ["new"]
    assert AuditEvent.objects.count() == events  # the audit trail is never thinned
