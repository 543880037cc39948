"""Answers about the past: pure functions over the ORM that return plain data.

Views render these, the CSV/JSON exports serialise them, tests compare them with numbers
computed by hand. Every function runs a fixed number of queries whatever the length of the
history (the page tests pin the counts), so a host with two years of inventories costs the
same round trips as one with two days.

Conventions:
- A day or a week is a calendar day/week in the dashboard's time zone (settings.TIME_ZONE);
  weeks start on Monday.
- A snapshot is valid from its ``taken_at`` until the next snapshot's ``taken_at``. The value
  of a day is the last snapshot taken on or before that day's end, carried forward; a host
  without any snapshot yet counts as 0.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from django.db import connection
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce, Collate, TruncDate
from django.utils import timezone

from workers.schema import Outcome

from ..models import Host, ModelFile, PruneItem, PruneRequest, Snapshot, restored
from . import history, lifecycle, rollup

# Outcomes of a prune item that took its file out of the model folder: quarantined (still on
# the host's disk, restorable until purged), deleted at once, or purged from quarantine since
# (the last two freed on disk). RESTORED belongs to restore requests and puts space *back in
# use*, so it is not "reclaimed".
RECLAIMED_OUTCOMES = (Outcome.QUARANTINED.value, Outcome.DELETED.value, PruneItem.Outcome.PURGED.value)
FREED_OUTCOMES = (Outcome.DELETED.value, PruneItem.Outcome.PURGED.value)
SHA256_LENGTH = 64


# ---------------------------------------------------------------- calendar helpers


def day_start(day: date) -> datetime:
    """Midnight of ``day`` in the dashboard's time zone, as an aware datetime."""
    return timezone.make_aware(datetime.combine(day, time.min))


def local_day(moment: datetime) -> date:
    return timezone.localtime(moment).date()


def week_start(day: date) -> date:
    return day - timedelta(days=day.weekday())


def days(start: date, end: date) -> list[date]:
    """Every day from start to end, both included."""
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def weeks(start: date, end: date) -> list[date]:
    """The Mondays of every week that overlaps [start, end]."""
    first = week_start(start)
    return [first + timedelta(weeks=i) for i in range((week_start(end) - first).days // 7 + 1)]


def default_range(today: date | None = None, length_days: int = 90) -> tuple[date, date]:
    """The last ``length_days`` days, but never before the first inventory: a fresh install's
    reports start where its data does instead of with months of flat zero lines."""
    today = today or timezone.localdate()
    return default_start(today, length_days), today


def default_start(end: date, length_days: int = 90) -> date:
    start = end - timedelta(days=length_days - 1)
    # The rollup's first day (one row per day) instead of the oldest of every snapshot's
    # time, which has no index of its own: a scan of the whole history.
    usable, first_day = rollup.first_day() if connection.vendor == "postgresql" else (False, None)
    if not usable:
        first = Snapshot.objects.order_by("taken_at").values_list("taken_at", flat=True).first()
        first_day = timezone.localtime(first).date() if first is not None else None
    if first_day is None:
        return end
    return min(max(start, first_day), end)


# ---------------------------------------------------------------- bytes and models on disk


@dataclass
class DiskSeries:
    """Per-day values for each host and the fleet (lists aligned with ``days``)."""

    days: list[date]
    hosts: list[str]
    bytes: dict[str, list[int]]
    files: dict[str, list[int]]
    fleet_bytes: list[int]
    fleet_files: list[int]

    def latest(self) -> list[dict]:
        """Each host's value on the last day of the range: the "models per host" chart."""
        return [{"host": h, "files": self.files[h][-1], "bytes": self.bytes[h][-1]} for h in self.hosts]


def _hosts(hosts: Iterable[str] | None) -> QuerySet[Host]:
    qs = Host.objects.all()
    if hosts:
        qs = qs.filter(name__in=list(hosts))
    return qs.order_by("name")


def disk_per_day(start: date, end: date, hosts: Iterable[str] | None = None) -> DiskSeries:
    """Bytes and file counts on disk per host and for the fleet, one value per day.

    Two queries: each host with its snapshot valid at ``start`` (a correlated subquery served
    by the snapshot_host_time index), then each host's last snapshot of each day inside the
    range (``_day_last``): at most one row per host-day, however often a host changed.
    """
    range_start, range_end = day_start(start), day_start(end + timedelta(days=1))
    before = Snapshot.objects.filter(host=OuterRef("pk"), taken_at__lt=range_start).order_by(
        "-taken_at", "-id"
    )
    host_rows = list(
        _hosts(hosts)
        .annotate(
            start_bytes=Subquery(before.values("total_bytes")[:1]),
            start_files=Subquery(before.values("file_count")[:1]),
        )
        .values_list("id", "name", "start_bytes", "start_files")
    )
    names = {host_id: name for host_id, name, _, _ in host_rows}
    day_list = days(start, end)
    index = {d: i for i, d in enumerate(day_list)}
    # changes[host][day index] = (bytes, files) of the last snapshot of that day.
    changes: dict[str, dict[int, tuple[int, int]]] = defaultdict(dict)
    for host_id, day, total, count in _day_last(list(names), range_start, range_end):
        changes[names[host_id]][index[day]] = (total, count)

    series_bytes: dict[str, list[int]] = {}
    series_files: dict[str, list[int]] = {}
    for _, name, start_bytes, start_files in host_rows:
        current = (start_bytes or 0, start_files or 0)
        per_host = changes.get(name, {})
        b, f = [], []
        for i in range(len(day_list)):
            current = per_host.get(i, current)
            b.append(current[0])
            f.append(current[1])
        series_bytes[name], series_files[name] = b, f
    host_names = [name for _, name, _, _ in host_rows]
    fleet_bytes = [sum(series_bytes[h][i] for h in host_names) for i in range(len(day_list))]
    fleet_files = [sum(series_files[h][i] for h in host_names) for i in range(len(day_list))]
    return DiskSeries(day_list, host_names, series_bytes, series_files, fleet_bytes, fleet_files)


def _day_last(host_ids: list[int], range_start: datetime, range_end: datetime) -> Iterable[tuple]:
    """(host id, local day, bytes, files) of each host's last snapshot of each day in the range.

    On PostgreSQL the database picks the last of each day (DISTINCT ON, the day taken in the
    dashboard's zone) and returns one row per host-day, not every snapshot with a time for
    Python to convert: two years of 50 hosts are 36,500 rows either way, but converting each
    time to a local day was most of the cost. Elsewhere (the demo's SQLite) the same in Python.
    """
    if connection.vendor == "postgresql":
        sql = f"""
            SELECT DISTINCT ON (host_id, day) host_id, (taken_at AT TIME ZONE %(tz)s)::date AS day,
                total_bytes, file_count
            FROM {Snapshot._meta.db_table}
            WHERE host_id = ANY(%(ids)s) AND taken_at >= %(range_start)s AND taken_at < %(range_end)s
            ORDER BY host_id, day, taken_at DESC, id DESC
        """
        params: dict[str, Any] = {
            "ids": host_ids,
            "range_start": range_start,
            "range_end": range_end,
            "tz": str(timezone.get_current_timezone()),
        }
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall()
    rows = (
        Snapshot.objects.filter(host_id__in=host_ids, taken_at__gte=range_start, taken_at__lt=range_end)
        .order_by("taken_at", "id")
        .values_list("host_id", "taken_at", "total_bytes", "file_count")
    )
    last: dict[tuple[int, date], tuple[int, int]] = {}
    for host_id, taken_at, total, count in rows.iterator(chunk_size=5000):
        last[host_id, local_day(taken_at)] = (total, count)
    return [(h, d, b, f) for (h, d), (b, f) in last.items()]


@dataclass
class DiskOverview:
    """What the reports page draws of the disk: the fleet per day, and the biggest hosts.

    Built without a per-host-per-day loop (see ``disk_overview``), so a year at 10,000 hosts
    costs what the changes inside the year cost, not hosts x days.
    """

    days: list[date]
    fleet_bytes: list[int]
    fleet_files: list[int]
    host_count: int
    # The ``top`` hosts with the most bytes on the last day (ties by name), by name.
    latest: list[dict]
    # Per-day series of those hosts, and the sum of every other host per day.
    top: DiskSeries
    other_bytes: list[int]


def fleet_per_day(start: date, end: date, hosts: Iterable[str] | None = None) -> tuple[list[int], list[int]]:
    """The fleet's bytes and files per day, the same numbers as ``disk_per_day``'s sums.

    On PostgreSQL one query: for the whole fleet, the fleet at ``start`` and its change per day
    from the daily rollup ingest keeps (``rollup``: rows per day, not per host, so the same
    work at 10 hosts and at 10,000); for some hosts, from their snapshots
    (``_fleet_changes_from_snapshots``). The running total over the days is taken here, one
    addition per day. Other databases (the demo's SQLite) take the straightforward sums of
    ``disk_per_day``.
    """
    day_list = days(start, end)
    if connection.vendor != "postgresql":
        series = disk_per_day(start, end, hosts)
        return series.fleet_bytes, series.fleet_files
    names = list(hosts or [])
    rolled = None if names else rollup.fleet_changes(start, end)
    if rolled is not None:
        # The whole fleet: from the daily rollup ingest keeps, whatever the fleet's size.
        (base_bytes, base_files), change = rolled
    else:
        (base_bytes, base_files), change = _fleet_changes_from_snapshots(start, end, names)
    fleet_bytes, fleet_files = [], []
    for d in day_list:
        db, df = change.get(d, (0, 0))
        base_bytes += db
        base_files += df
        fleet_bytes.append(base_bytes)
        fleet_files.append(base_files)
    return fleet_bytes, fleet_files


def _fleet_changes_from_snapshots(
    start: date, end: date, names: list[str]
) -> tuple[tuple[int, int], dict[date, tuple[int, int]]]:
    """``rollup.fleet_changes`` counted from the snapshots, for some hosts (or while the
    rollup is in another time zone): one query. Each host's value at ``start`` (a lateral
    lookup on the snapshot_host_time index), then the last snapshot of each host-day inside
    the range (DISTINCT ON), turned into a change against the host's previous value (LAG),
    summed per day. The work grows with the hosts and the snapshots inside the range, never
    with hosts x days."""
    host_table = Host._meta.db_table
    snap_table = Snapshot._meta.db_table
    host_filter = "WHERE name = ANY(%(names)s)" if names else ""
    sql = f"""
        WITH h AS (SELECT id FROM {host_table} {host_filter}),
        start_values AS (
            SELECT h.id AS host_id, s.total_bytes AS b, s.file_count AS f
            FROM h CROSS JOIN LATERAL (
                SELECT total_bytes, file_count FROM {snap_table}
                WHERE host_id = h.id AND taken_at < %(range_start)s
                ORDER BY taken_at DESC, id DESC LIMIT 1
            ) s
        ),
        day_last AS (
            SELECT DISTINCT ON (s.host_id, day)
                s.host_id, (s.taken_at AT TIME ZONE %(tz)s)::date AS day,
                s.total_bytes AS b, s.file_count AS f
            FROM {snap_table} s JOIN h ON h.id = s.host_id
            WHERE s.taken_at >= %(range_start)s AND s.taken_at < %(range_end)s
            ORDER BY s.host_id, day, s.taken_at DESC, s.id DESC
        ),
        changes AS (
            SELECT d.day,
                d.b - COALESCE(LAG(d.b) OVER w, sv.b, 0) AS db,
                d.f - COALESCE(LAG(d.f) OVER w, sv.f, 0) AS df
            FROM day_last d LEFT JOIN start_values sv ON sv.host_id = d.host_id
            WINDOW w AS (PARTITION BY d.host_id ORDER BY d.day)
        )
        SELECT NULL::date, COALESCE(SUM(b), 0), COALESCE(SUM(f), 0) FROM start_values
        UNION ALL
        SELECT day, SUM(db), SUM(df) FROM changes GROUP BY day
    """
    params: dict[str, Any] = {
        "names": names,
        "range_start": day_start(start),
        "range_end": day_start(end + timedelta(days=1)),
        "tz": str(timezone.get_current_timezone()),
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    base = (0, 0)
    change: dict[date, tuple[int, int]] = {}
    for day, db, df in rows:
        if day is None:
            base = (int(db), int(df))
        else:
            change[day] = (int(db), int(df))
    return base, change


def disk_overview(start: date, end: date, hosts: Iterable[str] | None = None, top: int = 30) -> DiskOverview:
    """The reports page's disk numbers: the fleet per day (``fleet_per_day``), the ``top``
    hosts by bytes on the last day with their own series, and the rest summed.

    Five queries whatever the fleet and the range: the fleet, the host count, the top hosts
    (``_top_hosts``, sorted in the database), and ``disk_per_day`` for the top hosts only. The "other
    hosts" series is the fleet minus the top hosts, which is the same integer sum.
    """
    fleet_bytes, fleet_files = fleet_per_day(start, end, hosts)
    range_end = day_start(end + timedelta(days=1))
    qs = _hosts(hosts)
    host_count = qs.count()
    rows = _top_hosts(range_end, list(hosts or []), top)
    rows.sort()  # by name (names are unique)
    latest: list[dict[str, Any]] = [{"host": n, "files": f, "bytes": b} for n, b, f in rows]
    shown = [n for n, _, _ in rows]
    top_series = (
        disk_per_day(start, end, shown) if shown else DiskSeries(days(start, end), [], {}, {}, [], [])
    )
    other_bytes: list[int] = []
    if host_count > len(shown):
        other_bytes = [
            total - sum(top_series.bytes[h][i] for h in shown) for i, total in enumerate(fleet_bytes)
        ]
    return DiskOverview(
        days=days(start, end),
        fleet_bytes=fleet_bytes,
        fleet_files=fleet_files,
        host_count=host_count,
        latest=latest,
        top=top_series,
        other_bytes=other_bytes,
    )


def _top_hosts(range_end: datetime, names: list[str], top: int) -> list[tuple[str, int, int]]:
    """(name, bytes, files) of the ``top`` hosts with the most bytes in their last snapshot
    before ``range_end``, ties by name (Python's order of code points, the "C" collation's).

    A range that ends after now (the usual "up to today") ends after every snapshot, since
    ingest stamps each with its own clock: the last one is the host's current snapshot, whose
    numbers ingest keeps on the host row (``file_count``, ``total_bytes``), so one top-N sort of
    the host rows answers, without a look at any snapshot. A range that ends earlier takes one
    lateral look-up per host on the snapshot_host_time index (PostgreSQL), or two correlated
    subqueries.
    """
    if range_end > timezone.now():
        name_order = Collate("name", "C") if connection.vendor == "postgresql" else F("name")
        current = (
            _hosts(names)
            .order_by(F("total_bytes").desc(), name_order)
            .values_list("name", "total_bytes", "file_count")[:top]
        )
        return list(current)
    if connection.vendor == "postgresql":
        host_filter = "WHERE h.name = ANY(%(names)s)" if names else ""
        sql = f"""
            SELECT h.name, COALESCE(s.total_bytes, 0) AS b, COALESCE(s.file_count, 0)
            FROM {Host._meta.db_table} h LEFT JOIN LATERAL (
                SELECT total_bytes, file_count FROM {Snapshot._meta.db_table}
                WHERE host_id = h.id AND taken_at < %(range_end)s
                ORDER BY taken_at DESC, id DESC LIMIT 1
            ) s ON true
            {host_filter}
            ORDER BY b DESC, h.name COLLATE "C" LIMIT %(top)s
        """
        with connection.cursor() as cursor:
            cursor.execute(sql, {"names": names, "range_end": range_end, "top": top})
            return [(n, int(b), int(f)) for n, b, f in cursor.fetchall()]
    last = Snapshot.objects.filter(host=OuterRef("pk"), taken_at__lt=range_end).order_by("-taken_at", "-id")
    return list(
        _hosts(names)
        .annotate(
            last_bytes=Coalesce(Subquery(last.values("total_bytes")[:1]), 0),
            last_files=Coalesce(Subquery(last.values("file_count")[:1]), 0),
        )
        .order_by(F("last_bytes").desc(), "name")
        .values_list("name", "last_bytes", "last_files")[:top]
    )


# ---------------------------------------------------------------- reclaimed space


def reclaimed_items(start: date, end: date, hosts: Iterable[str] | None = None) -> QuerySet[PruneItem]:
    """Prune items that gave space back (and were not restored), finished inside [start, end]."""
    qs = PruneItem.objects.filter(
        ~restored(),
        request__kind=PruneRequest.Kind.PRUNE,
        outcome__in=RECLAIMED_OUTCOMES,
        finished_at__gte=day_start(start),
        finished_at__lt=day_start(end + timedelta(days=1)),
    )
    if hosts:
        qs = qs.filter(request__host__name__in=list(hosts))
    return qs


def reclaimed_per_week(start: date, end: date, hosts: Iterable[str] | None = None) -> list[dict]:
    """Bytes reclaimed and files removed per week (Monday), every week of the range listed.

    ``bytes`` is the sum of ``in_quarantine`` (still on the hosts' disks) and ``freed`` (deleted
    at once, or purged since); a week is the one the file left its folder in.

    One query grouped by (host, day); the days fold into weeks here, in the dashboard's time
    zone, so the result does not depend on the database's idea of a week.
    """
    per_week: dict[date, dict] = {
        w: {"week": w, "bytes": 0, "in_quarantine": 0, "freed": 0, "files": 0, "per_host": defaultdict(int)}
        for w in weeks(start, end)
    }
    # The local day in the database (TruncDate in the current zone): converting each time in
    # Python was most of this function's cost over a year of a fleet's deletions.
    rows = (
        reclaimed_items(start, end, hosts)
        .annotate(day=TruncDate("finished_at"))
        .values_list("request__host__name", "day", "bytes_reclaimed", "outcome")
    )
    for host, day, reclaimed, outcome in rows.iterator(chunk_size=5000):
        if day is None:  # reclaimed_items are finished ones; the column is nullable
            continue
        bucket = per_week[week_start(day)]
        bucket["bytes"] += reclaimed
        bucket["freed" if outcome in FREED_OUTCOMES else "in_quarantine"] += reclaimed
        bucket["files"] += 1
        bucket["per_host"][host] += reclaimed
    result = []
    for w in sorted(per_week):
        bucket = per_week[w]
        bucket["per_host"] = dict(sorted(bucket["per_host"].items()))
        result.append(bucket)
    return result


def reclaimed_per_host(start: date, end: date, hosts: Iterable[str] | None = None) -> list[dict]:
    """Totals per host over the range ("how much did we reclaim this quarter, per host")."""
    rows = (
        reclaimed_items(start, end, hosts)
        .values("request__host__name")
        .annotate(
            bytes=Sum("bytes_reclaimed"),
            freed=Coalesce(Sum("bytes_reclaimed", filter=Q(outcome__in=FREED_OUTCOMES)), 0),
            files=Count("id"),
        )
        .order_by("request__host__name")
    )
    return [
        {
            "host": r["request__host__name"],
            "bytes": r["bytes"],
            "in_quarantine": r["bytes"] - r["freed"],
            "freed": r["freed"],
            "files": r["files"],
        }
        for r in rows
    ]


# ---------------------------------------------------------------- requests over time


def requests_per_week(start: date, end: date, hosts: Iterable[str] | None = None) -> list[dict]:
    """Per week: requests proposed, approved, rejected, expired, and still pending at the
    week's end (proposed before it, not decided or expired by then).

    One query over the requests that could matter to the range: created before its end and
    not closed before its start.
    """
    range_start, range_end = day_start(start), day_start(end + timedelta(days=1))
    qs = PruneRequest.objects.filter(created_at__lt=range_end).filter(
        Q(finished_at__isnull=True) | Q(finished_at__gte=range_start) | Q(decided_at__gte=range_start)
    )
    if hosts:
        qs = qs.filter(host__name__in=list(hosts))
    week_list = weeks(start, end)
    out: dict[date, dict[str, Any]] = {
        w: {"week": w, "proposed": 0, "approved": 0, "rejected": 0, "expired": 0, "pending": 0}
        for w in week_list
    }
    week_ends = [day_start(w + timedelta(weeks=1)) for w in week_list]
    # pending[i] changes by +1 at the first week end after a request's creation and by -1 at
    # the first week end at or after its closing: one bisect per request instead of a pass
    # over every week (a year of a 50-host fleet's requests was 275,000 comparisons).
    pending_change = [0] * (len(week_list) + 1)
    rows = qs.values_list("created_at", "state", "decided_at", "finished_at")
    for created_at, state, decided_at, finished_at in rows.iterator(chunk_size=5000):
        if created_at >= range_start:
            out[week_start(local_day(created_at))]["proposed"] += 1
        # When the request stopped waiting for a person, and how.
        if state == PruneRequest.State.EXPIRED:
            closed_at, verdict = finished_at, "expired"
        elif state == PruneRequest.State.REJECTED:
            closed_at, verdict = decided_at, "rejected"
        elif state == PruneRequest.State.WITHDRAWN:
            # Taken back by its proposer: not approved, closed when withdrawn.
            closed_at, verdict = finished_at, "rejected"
        elif decided_at is not None:
            closed_at, verdict = decided_at, "approved"
        else:
            closed_at, verdict = None, ""
        if closed_at is not None and range_start <= closed_at < range_end:
            out[week_start(local_day(closed_at))][verdict] += 1
        # Pending at week_ends[i] when created_at < week_ends[i] <= closed_at.
        first = bisect_right(week_ends, created_at)
        last = len(week_ends) if closed_at is None else bisect_right(week_ends, closed_at)
        if first < last:
            pending_change[first] += 1
            pending_change[last] -= 1
    running = 0
    for i, w in enumerate(week_list):
        running += pending_change[i]
        out[w]["pending"] = running
    return [out[w] for w in week_list]


# ---------------------------------------------------------------- the deletions audit


# The deletions audit keeps a purged file's row: it was quarantined first, then freed by the
# purge. Of the bytes of a row, "in quarantine" still sit on the host's disk (restorable) and
# "freed on disk" are gone (deleted at once, or purged); a restored file counts in neither.
# The deletions audit lists a file found missing from quarantine at its purge too (it left its
# folder by a request), with nothing in quarantine and nothing freed.
DELETION_OUTCOMES = (*RECLAIMED_OUTCOMES, PruneItem.Outcome.MISSING.value)


@dataclass
class DeletionFilter:
    start: date
    end: date
    hosts: Sequence[str] = ()
    user: str = ""
    # "reclaimed": only items moved out of the model folder (quarantined, deleted, purged);
    # "all": every finished item, skips included.
    outcomes: str = "reclaimed"


def deletions(f: DeletionFilter) -> QuerySet[PruneItem]:
    """Every finished prune item in the period, with its request, requester and approver:
    one query (joins), newest first."""
    qs = (
        PruneItem.objects.filter(
            request__kind=PruneRequest.Kind.PRUNE,
            finished_at__gte=day_start(f.start),
            finished_at__lt=day_start(f.end + timedelta(days=1)),
        )
        .exclude(outcome=PruneItem.Outcome.PENDING)
        .annotate(restored=restored())
    )
    if f.outcomes == "reclaimed":
        qs = qs.filter(outcome__in=DELETION_OUTCOMES)
    if f.hosts:
        qs = qs.filter(request__host__name__in=list(f.hosts))
    if f.user:
        qs = qs.filter(Q(request__requested_by__username=f.user) | Q(request__decided_by__username=f.user))
    return qs.select_related("request__host", "request__requested_by", "request__decided_by").order_by(
        "-finished_at", "request_id", "path"
    )


def deletion_totals(qs: QuerySet[PruneItem]) -> dict:
    """Files removed, their bytes still in quarantine and freed on disk, and the requests
    behind the rows of ``qs``: one query. Never one "reclaimed" sum: a quarantined file still
    takes its space on the host until it is purged."""
    kept = Q(restored=False)
    totals = qs.order_by().aggregate(
        rows=Count("id"),
        files=Count("id", filter=Q(outcome__in=DELETION_OUTCOMES) & kept),
        bytes_in_quarantine=Sum("bytes_reclaimed", filter=Q(outcome=Outcome.QUARANTINED.value) & kept),
        bytes_freed=Sum("bytes_reclaimed", filter=Q(outcome__in=FREED_OUTCOMES) & kept),
        requests=Count("request_id", distinct=True),
    )
    totals["bytes_in_quarantine"] = totals["bytes_in_quarantine"] or 0
    totals["bytes_freed"] = totals["bytes_freed"] or 0
    return totals


DELETION_COLUMNS = (
    "finished_at",
    "host",
    "request_id",
    "campaign_id",
    "requested_by",
    "approved_by",
    "decided_at",
    "comment",
    "reason",
    "path",
    "size",
    "sha256",
    "outcome",
    "bytes_in_quarantine",
    "bytes_freed",
)


def deletion_row(item: PruneItem) -> dict:
    """One row of the audit export; the same dict feeds the table, and ``deletion_rows`` makes
    it for the CSV and the JSON from column values."""
    request = item.request
    restored = bool(vars(item)["restored"])  # read with the items (``restored()``), never assumed
    kept = not restored
    return {
        "finished_at": item.finished_at.isoformat() if item.finished_at else "",
        "host": request.host.name,
        "request_id": str(request.id),
        # A host's part of a campaign: the campaign it was approved with (empty otherwise).
        "campaign_id": str(request.campaign_id) if request.campaign_id else "",
        "requested_by": request.requested_by_name,
        "approved_by": request.decided_by.get_username() if request.decided_by else "",
        "decided_at": request.decided_at.isoformat() if request.decided_at else "",
        "comment": request.decision_comment,
        "reason": request.reason,
        "path": item.path,
        "size": item.size,
        "sha256": item.sha256,
        # A quarantined file moved back later gave nothing back in the end.
        "outcome": f"{item.outcome}, restored" if restored else item.outcome,
        "bytes_in_quarantine": item.bytes_reclaimed if kept and item.outcome == Outcome.QUARANTINED else 0,
        "bytes_freed": item.bytes_reclaimed if kept and item.outcome in FREED_OUTCOMES else 0,
    }


_EXPORT_FIELDS = (
    "finished_at",
    "request__host__name",
    "request_id",
    "request__campaign_id",
    "request__requested_by__username",
    "request__decided_by__username",
    "request__decided_at",
    "request__decision_comment",
    "request__reason",
    "path",
    "size",
    "sha256",
    "outcome",
    "bytes_reclaimed",
    "restored",
)


def deletion_rows(qs: QuerySet[PruneItem]) -> Iterator[dict]:
    """``deletion_row`` of every item of ``qs`` (``deletions``), for the exports: the same
    dicts from plain column values, in chunks, without building an item, its request, its
    host and two users per row (a year's export of 7,800 rows spent most of its time there).
    """
    rows = qs.values_list(*_EXPORT_FIELDS).iterator(chunk_size=2000)
    for (
        finished_at,
        host,
        request_id,
        campaign_id,
        requested_by,
        decided_by,
        decided_at,
        comment,
        reason,
        path,
        size,
        sha256,
        outcome,
        reclaimed,
        was_restored,
    ) in rows:
        kept = not was_restored
        yield {
            "finished_at": finished_at.isoformat() if finished_at else "",
            "host": host,
            "request_id": str(request_id),
            "campaign_id": str(campaign_id) if campaign_id else "",
            "requested_by": requested_by if requested_by is not None else "policy",
            "approved_by": decided_by or "",
            "decided_at": decided_at.isoformat() if decided_at else "",
            "comment": comment,
            "reason": reason,
            "path": path,
            "size": size,
            "sha256": sha256,
            "outcome": f"{outcome}, restored" if was_restored else outcome,
            "bytes_in_quarantine": reclaimed if kept and outcome == Outcome.QUARANTINED else 0,
            "bytes_freed": reclaimed if kept and outcome in FREED_OUTCOMES else 0,
        }


# ---------------------------------------------------------------- a host's timeline


@dataclass
class TimelineStep:
    snapshot: Snapshot
    previous_id: int | None
    added: int = 0
    removed: int = 0
    changed: int = 0
    bytes_delta: int = 0

    @property
    def has_changes(self) -> bool:
        return bool(self.added or self.removed or self.changed)


def snapshot_at(host: Host, moment: datetime) -> Snapshot | None:
    """The snapshot valid at ``moment``: the latest taken at or before it (one indexed query)."""
    return host.snapshots.filter(taken_at__lte=moment).order_by("-taken_at", "-id").first()


def timeline_steps(snapshots: Sequence[Snapshot]) -> list[TimelineStep]:
    """Change counts for a page of one host's snapshots (newest first), each against the
    snapshot before it, which may sit on the next page.

    Three queries whatever the page: history.change_summaries (the previous snapshot and the
    page's files, compared as the diff view compares them) and the size of the snapshot just
    older than the page. Counts are not stored on the snapshot because compaction removes
    snapshots, which would silently make a stored "against the previous one" wrong.
    """
    if not snapshots:
        return []
    summaries = history.change_summaries(snapshots)
    oldest = snapshots[-1]
    older = (
        Snapshot.objects.filter(host_id=oldest.host_id)
        .filter(Q(taken_at__lt=oldest.taken_at) | Q(taken_at=oldest.taken_at, id__lt=oldest.id))
        .order_by("-taken_at", "-id")
        .values_list("id", "total_bytes")
        .first()
    )
    steps = []
    prev_id: int | None
    for i, snap in enumerate(snapshots):
        if i + 1 < len(snapshots):
            prev_id, prev_bytes = snapshots[i + 1].id, snapshots[i + 1].total_bytes
        else:
            prev_id, prev_bytes = older if older else (None, 0)
        summary = summaries[snap.id]
        steps.append(
            TimelineStep(
                snapshot=snap,
                previous_id=prev_id,
                added=summary.added,
                removed=summary.removed,
                changed=summary.changed,
                bytes_delta=snap.total_bytes - prev_bytes,
            )
        )
    return steps


# ---------------------------------------------------------------- a model's lifecycle


@dataclass
class HostLifecycle:
    host: str
    host_status: str
    first_seen: datetime
    last_seen: datetime | None  # None only for a host holding it with no current snapshot row
    present: bool
    gone_since: datetime | None  # the first inventory without it, when it is gone
    paths: list[str] = field(default_factory=list)
    removals: list[dict] = field(default_factory=list)


def is_sha256(key: str) -> bool:
    return len(key) == SHA256_LENGTH and all(c in "0123456789abcdef" for c in key.lower())


def model_lifecycle(key: str, rows: Sequence[lifecycle.HostSighting] | None = None) -> list[HostLifecycle]:
    """Where a model (a file name, or a sha256) has been, where it is now, and who removed it.

    ``rows`` is a page of the model's sightings (``inventory/lifecycle.py``; all of them when
    None), which say when each host first held it, whether it holds it now and since when it
    is gone. Two queries more: the paths it has in those hosts' current inventories, and the
    prune items that name it on those hosts.
    """
    kind, key = lifecycle.key_of(key)
    by_hash = kind == lifecycle.Kind.SHA256
    rows = list(lifecycle.hosts(key) if rows is None else rows)
    host_ids = [r.host_id for r in rows if r.present]
    present: dict[int, list[str]] = defaultdict(list)
    current = ModelFile.objects.filter(
        Q(sha256=key) if by_hash else Q(name=key),
        snapshot__host__current_snapshot=F("snapshot_id"),
        snapshot__host_id__in=host_ids,
    )
    for host_id, path in current.values_list("snapshot__host_id", "path"):
        present[host_id].append(path)
    item_match = Q(sha256=key) if by_hash else Q(path=key) | Q(path__endswith="/" + key)
    removals: dict[int, list[dict]] = defaultdict(list)
    items = (
        PruneItem.objects.filter(
            item_match, request__kind=PruneRequest.Kind.PRUNE, request__host_id__in=[r.host_id for r in rows]
        )
        .exclude(outcome=PruneItem.Outcome.PENDING)
        .annotate(restored=restored())
        .select_related("request__host", "request__requested_by", "request__decided_by")
        .order_by("finished_at")
    )
    for item in items:
        removals[item.request.host_id].append(deletion_row(item) | {"request": item.request})
    return [
        HostLifecycle(
            host=r.host,
            host_status=r.host_status,
            first_seen=r.first_seen,
            last_seen=r.last_seen,
            present=r.present,
            gone_since=None if r.present else r.gone_since,
            paths=sorted(present.get(r.host_id, [])),
            removals=removals.get(r.host_id, []),
        )
        for r in rows
    ]
