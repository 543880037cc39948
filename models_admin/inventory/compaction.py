"""Thinning old snapshots so the history stays small without changing what reports say.

Rules, oldest first:
- older than ``weekly_after_days``: keep the last snapshot of each calendar week;
- older than ``daily_after_days``: keep the last snapshot of each calendar day;
- newer: keep everything.
Then two kept neighbours with the same digest collapse into the older one (its
``last_seen_at`` and ``seen_count`` absorb the newer), as ingest would have stored them.

Why the reports do not move: a day's value is the last snapshot taken on or before that
day's end, and the last snapshot of each day survives; a collapsed neighbour had the same
inventory as the one that now stands for it. Inside the weekly zone a day's value becomes the
week's (the price of keeping one row per week); week-end values stay exact.

Never deleted: a host's current snapshot, its newest one (ingest compares the next inventory
with it), and any snapshot a PruneRequest points at (what an approver was shown). Audit
events are never touched. Each host is compacted in its own transaction holding the host's
row lock, the same lock ingest takes, so a report arriving mid-compaction waits instead of
comparing against a snapshot that is being deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.db import transaction
from django.utils import timezone

from ..models import AuditEvent, Host, ModelFile, PruneRequest, ReceivedReport, Snapshot
from . import rollup
from .reports import local_day, week_start

DEFAULT_DAILY_AFTER_DAYS = 30
DEFAULT_WEEKLY_AFTER_DAYS = 180
# Received-report rows (the idempotency record of every report, and the rejected-reports
# page) are deleted after this many days. Safe for idempotency: a report older than the
# clock-skew window (minutes) is refused as stale anyway, so a forgotten id cannot come back.
DEFAULT_RECEIVED_REPORTS_DAYS = 30


@dataclass(frozen=True)
class Retention:
    daily_after_days: int = DEFAULT_DAILY_AFTER_DAYS
    weekly_after_days: int = DEFAULT_WEEKLY_AFTER_DAYS
    received_reports_days: int = DEFAULT_RECEIVED_REPORTS_DAYS

    def __post_init__(self) -> None:
        if self.daily_after_days < 1:
            raise ValueError("keep every snapshot for at least one day")
        if self.weekly_after_days < self.daily_after_days:
            raise ValueError("weekly thinning must start after daily thinning")
        if self.received_reports_days < 1:
            raise ValueError("keep received reports for at least one day")

    def as_kwargs(self) -> dict[str, int]:
        return {
            "daily_after_days": self.daily_after_days,
            "weekly_after_days": self.weekly_after_days,
            "received_reports_days": self.received_reports_days,
        }


@dataclass
class HostPlan:
    delete: list[int]
    merged: int  # of ``delete``, how many were identical neighbours
    # kept snapshot id -> (last_seen_at, seen_count) after absorbing identical neighbours
    absorb: dict[int, tuple[datetime, int]]


def plan_host(
    rows: list[tuple[int, datetime, str, datetime, int]],
    protected: set[int],
    now: datetime,
    retention: Retention,
) -> HostPlan:
    """Decide, for one host's snapshots (id, taken_at, digest, last_seen_at, seen_count)
    sorted oldest first, which to delete. Pure: the tests call it without a database."""
    daily_cutoff = now - timedelta(days=retention.daily_after_days)
    weekly_cutoff = now - timedelta(days=retention.weekly_after_days)

    def bucket(taken_at: datetime) -> tuple[str, date] | None:
        if taken_at >= daily_cutoff:
            return None
        day = local_day(taken_at)
        return ("week", week_start(day)) if taken_at < weekly_cutoff else ("day", day)

    # The last snapshot of each bucket survives; rows are sorted, so the last one wins.
    last_of_bucket: dict[tuple[str, date], int] = {}
    for sid, taken_at, *_ in rows:
        if (b := bucket(taken_at)) is not None:
            last_of_bucket[b] = sid
    survivors = set(last_of_bucket.values())
    delete = [
        sid for sid, taken_at, *_ in rows if bucket(taken_at) is not None and sid not in survivors | protected
    ]
    gone = set(delete)

    kept = [r for r in rows if r[0] not in gone]
    absorb: dict[int, tuple[datetime, int]] = {}
    merged = 0
    anchor = None  # the kept snapshot an identical newer neighbour folds into
    for sid, taken_at, digest, last_seen_at, seen_count in kept:
        if (
            anchor is not None
            and digest == anchor[2]
            and sid not in protected
            and bucket(taken_at) is not None  # recent history is left exactly as ingest wrote it
        ):
            seen_at, count = absorb.get(anchor[0], (anchor[3], anchor[4]))
            absorb[anchor[0]] = (max(seen_at, last_seen_at), count + seen_count)
            delete.append(sid)
            merged += 1
            continue
        anchor = (sid, taken_at, digest, last_seen_at, seen_count)
    return HostPlan(delete=delete, merged=merged, absorb=absorb)


def compact_host(host_id: int, now: datetime, retention: Retention, actor: str = "system") -> dict | None:
    """Compact one host under its row lock; returns the counts, or None if nothing went."""
    with transaction.atomic():
        host = Host.objects.select_for_update().filter(id=host_id).first()
        if host is None:
            return None
        rows = list(
            Snapshot.objects.filter(host=host)
            .order_by("taken_at", "id")
            .values_list(
                "id", "taken_at", "digest", "last_seen_at", "seen_count", "total_bytes", "file_count"
            )
        )
        if len(rows) < 2:
            return None
        protected = {rows[-1][0]}
        if host.current_snapshot_id is not None:
            protected.add(host.current_snapshot_id)
        protected |= {
            sid
            for sid in PruneRequest.objects.filter(host=host, snapshot__isnull=False).values_list(
                "snapshot_id", flat=True
            )
            if sid is not None
        }
        plan = plan_host([row[:5] for row in rows], protected, now, retention)
        if not plan.delete:
            return None
        for sid, (last_seen_at, seen_count) in plan.absorb.items():
            Snapshot.objects.filter(id=sid).update(last_seen_at=last_seen_at, seen_count=seen_count)
        # The reports' daily rollup: the deleted snapshots' changes move to the next kept one.
        rollup.forget(host.id, [(r[0], r[1], r[5], r[6]) for r in rows], plan.delete)
        files = ModelFile.objects.filter(snapshot_id__in=plan.delete).count()
        # ModelFile rows go by ON DELETE CASCADE through Django's collector (one DELETE each
        # for files and snapshots; no signals are connected to either model).
        Snapshot.objects.filter(id__in=plan.delete).delete()
        counts = {
            "snapshots_deleted": len(plan.delete),
            "identical_merged": plan.merged,
            "files_deleted": files,
            "snapshots_kept": len(rows) - len(plan.delete),
            **retention.as_kwargs(),
        }
        AuditEvent.record(
            AuditEvent.Action.SNAPSHOTS_COMPACTED, actor=actor, host=host.name, obj=host, **counts
        )
    return counts


def compact_snapshots(
    now: datetime | None = None, retention: Retention | None = None, actor: str = "system"
) -> dict:
    """Compact every host (the periodic task's body). Returns the totals of the run."""
    now = now or timezone.now()
    retention = retention or Retention()
    totals = {"hosts": 0, "snapshots_deleted": 0, "identical_merged": 0, "files_deleted": 0}
    # Only hosts with something older than the daily cutoff can lose a snapshot.
    cutoff = now - timedelta(days=retention.daily_after_days)
    candidates = (
        Snapshot.objects.filter(taken_at__lt=cutoff).values_list("host_id", flat=True).distinct().order_by()
    )
    for host_id in list(candidates):
        counts = compact_host(host_id, now, retention, actor=actor)
        if counts:
            totals["hosts"] += 1
            for key in ("snapshots_deleted", "identical_merged", "files_deleted"):
                totals[key] += counts[key]
    totals["received_reports_deleted"] = forget_received_reports(now, retention)
    return totals


def forget_received_reports(now: datetime, retention: Retention, batch: int = 10_000) -> int:
    """Delete received-report rows older than the retention, a batch per transaction.

    These rows grow with time alone (one per report, 10,000 hosts hourly: 87 million a year)
    and say nothing the audit trail and the snapshots do not: the audit keeps every change and
    decision. Batches keep each transaction short while ingest goes on.
    """
    cutoff = now - timedelta(days=retention.received_reports_days)
    deleted = 0
    while True:
        ids = list(ReceivedReport.objects.filter(received_at__lt=cutoff).values_list("id", flat=True)[:batch])
        if not ids:
            return deleted
        deleted += ReceivedReport.objects.filter(id__in=ids).delete()[0]
