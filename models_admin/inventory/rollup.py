"""The fleet's disk use per day, kept by ingest: what the reports page reads at any fleet size.

A day's fleet value (``reports``) is the sum over hosts of each host's last snapshot on or
before the day's end. Each snapshot's *change* (its bytes and files minus those of the host's
previous snapshot, or minus 0 for a host's first) telescopes: the fleet at a moment is the sum
of the changes of every snapshot taken before it. ``DiskDay`` keeps that sum per local day, so

- the fleet when a range starts is the sum of the rows before its first day, and
- its value at the end of each day of the range is that plus a running sum of the days' rows,

a few thousand rows for years of history, instead of one look-up per host (10,000 index
probes at 10,000 hosts, 60 ms) plus every snapshot inside the range.

Who writes it, one statement each:
- ingest, for every new snapshot (``record``): its change against the snapshot it replaces,
  which is the host's newest (ingest takes ``taken_at`` from its own clock, under the host's
  row lock);
- compaction, for the snapshots it deletes (``forget``): a deleted snapshot's change moves to
  the day of the next snapshot that stays, which now carries it;
- ``rebuild``, from the snapshots themselves (the migration that made the table, and a change
  of the dashboard's time zone: each row says the zone its day was counted in, and the reports
  fall back to the snapshots while rows of another zone exist).

Hosts are never deleted (they are retired and keep their history), so no row has to forget a
host. The tests compare every figure with the straightforward recount over the snapshots.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from ..models import DiskDay, Snapshot

# A day's row is split by host id modulo this: two ingest workers storing new inventories on
# the same day touch the same row only one time in SHARDS, so they seldom wait for each
# other's commit (the row stays locked until the ingest transaction ends).
SHARDS = 8

TABLE = DiskDay._meta.db_table
UPSERT_ROWS = 150

Change = tuple[int, int]  # bytes, files


def zone_name() -> str:
    """The zone a row's day is counted in: the dashboard's (``settings.TIME_ZONE``)."""
    return timezone.get_default_timezone_name()


def local_day(moment: datetime) -> date:
    return timezone.localtime(moment, timezone.get_default_timezone()).date()


def _upsert(changes: dict[tuple[date, int], Change]) -> None:
    """Add each change to its (day, shard) row: one statement. Rows in key order, so two
    writers that each add to several rows lock them in the same order (no deadlock). A change
    of nothing still makes its row: a day with a snapshot has a row (``first_day``)."""
    rows = sorted(changes.items())
    zone = zone_name()
    # At most UPSERT_ROWS rows a statement (SQLite's limit on parameters); ingest and
    # compaction write one statement, a rebuild of years of history on SQLite a few.
    for chunk in range(0, len(rows), UPSERT_ROWS):
        part = rows[chunk : chunk + UPSERT_ROWS]
        values = ", ".join(["(%s, %s, %s, %s, %s)"] * len(part))
        params: list[Any] = []
        for (day, shard), (bytes_change, files_change) in part:
            params += [zone, day, shard, bytes_change, files_change]
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (zone, day, shard, bytes_change, files_change) VALUES {values}"
                f" ON CONFLICT (zone, day, shard) DO UPDATE SET"
                f" bytes_change = {TABLE}.bytes_change + excluded.bytes_change,"
                f" files_change = {TABLE}.files_change + excluded.files_change",
                params,
            )


def record(snapshot: Snapshot, replaced: Snapshot | None) -> None:
    """Ingest stored ``snapshot``, which replaces the host's newest snapshot ``replaced`` (None
    for a host's first): add its change to its day. Ingest's one statement for the rollup, in
    the transaction that stores the snapshot."""
    before = (replaced.total_bytes, replaced.file_count) if replaced is not None else (0, 0)
    change = (snapshot.total_bytes - before[0], snapshot.file_count - before[1])
    _upsert({(local_day(snapshot.taken_at), snapshot.host_id % SHARDS): change})


def forget(host_id: int, rows: Sequence[tuple[int, datetime, int, int]], deleted: Iterable[int]) -> None:
    """Compaction is about to delete ``deleted`` of the host's snapshots ``rows`` (id,
    taken_at, total_bytes, file_count, oldest first, every snapshot of the host).

    A deleted snapshot's change (against its predecessor) moves to the next snapshot that
    stays: after the delete, that one's change is against the last survivor before it, which is
    the sum of the changes in between. Compaction never deletes a host's newest snapshot, so
    there always is one. One statement.
    """
    gone = set(deleted)
    shard = host_id % SHARDS
    moves: dict[tuple[date, int], list[int]] = defaultdict(lambda: [0, 0])
    previous: Change = (0, 0)
    carried: list[tuple[date, Change]] = []
    for snapshot_id, taken_at, total_bytes, file_count in rows:
        change = (total_bytes - previous[0], file_count - previous[1])
        previous = (total_bytes, file_count)
        if snapshot_id in gone:
            carried.append((local_day(taken_at), change))
            continue
        survivor_day = local_day(taken_at)
        for day, (bytes_change, files_change) in carried:
            if day == survivor_day:
                continue
            moves[day, shard][0] -= bytes_change
            moves[day, shard][1] -= files_change
            moves[survivor_day, shard][0] += bytes_change
            moves[survivor_day, shard][1] += files_change
        carried = []
    _upsert({key: (b, f) for key, (b, f) in moves.items()})


def rebuild(snapshot_model: type[Snapshot] = Snapshot, day_model: type[DiskDay] = DiskDay) -> None:
    """Every row again, from the snapshots (in the dashboard's time zone). The models are
    the migration's historical ones when it builds the table."""
    zone = zone_name()
    with transaction.atomic():
        day_model.objects.all().delete()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(
                    f"""
                    INSERT INTO {TABLE} (zone, day, shard, bytes_change, files_change)
                    SELECT %(zone)s, day, shard, SUM(db), SUM(df) FROM (
                        SELECT (taken_at AT TIME ZONE %(zone)s)::date AS day,
                            host_id %% %(shards)s AS shard,
                            total_bytes - COALESCE(LAG(total_bytes) OVER w, 0) AS db,
                            file_count - COALESCE(LAG(file_count) OVER w, 0) AS df
                        FROM {snapshot_model._meta.db_table}
                        WINDOW w AS (PARTITION BY host_id ORDER BY taken_at, id)
                    ) c
                    GROUP BY day, shard
                    """,
                    {"zone": zone, "shards": SHARDS},
                )
            return
        changes: dict[tuple[date, int], list[int]] = defaultdict(lambda: [0, 0])
        last: dict[int, Change] = {}
        snapshots = snapshot_model.objects.order_by("host_id", "taken_at", "id").values_list(
            "host_id", "taken_at", "total_bytes", "file_count"
        )
        for host_id, taken_at, total_bytes, file_count in snapshots.iterator(chunk_size=5000):
            before = last.get(host_id, (0, 0))
            last[host_id] = (total_bytes, file_count)
            row = changes[local_day(taken_at), host_id % SHARDS]
            row[0] += total_bytes - before[0]
            row[1] += file_count - before[1]
        _upsert({key: (b, f) for key, (b, f) in changes.items()})


def fleet_changes(start: date, end: date) -> tuple[Change, dict[date, Change]] | None:
    """The fleet at the start of ``start`` and its change on each day of [start, end], in the
    current time zone: one query over the rollup (PostgreSQL). None while rows counted in
    another zone exist (the time zone changed and ``rebuild`` has not run): the caller then
    counts from the snapshots."""
    sql = f"""
        SELECT 0, NULL::date, COALESCE(SUM(bytes_change), 0), COALESCE(SUM(files_change), 0)
        FROM {TABLE} WHERE zone = %(zone)s AND day < %(start)s
        UNION ALL
        SELECT 1, day, SUM(bytes_change), SUM(files_change)
        FROM {TABLE} WHERE zone = %(zone)s AND day >= %(start)s AND day <= %(end)s GROUP BY day
        UNION ALL
        SELECT 2, NULL, 1, 0 FROM (SELECT 1 FROM {TABLE} WHERE zone <> %(zone)s LIMIT 1) other
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"zone": timezone.get_current_timezone_name(), "start": start, "end": end})
        rows = cursor.fetchall()
    base: Change = (0, 0)
    per_day: dict[date, Change] = {}
    for kind, day, bytes_change, files_change in rows:
        if kind == 2:
            return None
        if kind == 0:
            base = (int(bytes_change), int(files_change))
        else:
            per_day[day] = (int(bytes_change), int(files_change))
    return base, per_day


def first_day() -> tuple[bool, date | None]:
    """(usable, the first day with a snapshot in the current time zone): one query over the
    rollup, not a scan of every snapshot's time. Not usable while rows counted in another
    zone exist. Compaction keeps the last snapshot of each day of its daily zone, so a day
    keeps its row; only a day all of whose snapshots went in the weekly zone (older than the
    default range anyway) keeps a row without a snapshot."""
    sql = f"""
        SELECT (SELECT min(day) FROM {TABLE} WHERE zone = %(zone)s),
            EXISTS (SELECT 1 FROM {TABLE} WHERE zone <> %(zone)s)
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, {"zone": timezone.get_current_timezone_name()})
        day, other_zone = cursor.fetchone()
    return (not other_zone, day)
