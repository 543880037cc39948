"""What agents report about use, stored for pages, policies and the planner.

Called by ingest for every inventory (and by the heartbeat for its /proc look), inside the
report's transaction and under its host's row lock, so two reports of one host never
interleave their usage rows. A heartbeat's disk point (``record_heartbeat_disks``) takes no
lock: it is one atomic upsert of one row.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from django.db import connection
from django.utils import timezone

from workers.schema import AtimeMode, FileEntry, InventoryReport, ModelDirState, Store

from ..models import DiskSample, FileUsage, Host
from . import alerts, forecast

_FIELDS = ("atime_ns", "atime_mode", "open_by", "last_open_at", "last_open_by")


def _holders(entry: FileEntry) -> list[dict]:
    return [h.model_dump(mode="json") for h in entry.open_by]


def usage_digest(files: Iterable[FileEntry], modes: dict[Store, AtimeMode]) -> str:
    """sha256 over what the usage rows of ``files`` would hold: equal means nothing to write."""
    digest = hashlib.sha256()
    for entry in sorted(files, key=lambda f: (f.store.value, f.path)):
        row = (
            entry.store.value,
            entry.path,
            entry.atime_ns,
            modes.get(entry.store, AtimeMode.UNKNOWN).value,
            [(h.pid, h.program, h.how) for h in entry.open_by],
            entry.last_open_at.isoformat() if entry.last_open_at else None,
            entry.last_open_by,
        )
        digest.update(json.dumps(row, separators=(",", ":")).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def record_inventory(host: Host, report: InventoryReport, now: datetime) -> dict[str, Any]:
    """Store the report's per-file use and the day's free disk space; returns the host columns to set.

    Usage rows are written only where they changed (none at all when the report's usage digest
    equals the host's last one), and removed for files no longer in a store that was read.
    """
    facts = report.facts
    modes = {s.store: s.atime_mode for s in facts.stores}
    digest = usage_digest(report.files, modes)
    if digest != host.usage_digest:
        read = {s.store.value for s in facts.stores if s.state is ModelDirState.OK} or (
            {Store.LLM.value} if facts.model_dir_state is ModelDirState.OK else set()
        )
        record_files(host, report.files, modes, read, now)
    predicted = record_disk(host, facts.disk_free, facts.disk_total, now)
    return {
        **predicted,
        "stores": [s.model_dump(mode="json") for s in facts.stores],
        "open_checked_at": facts.open_checked_at,
        "open_check_error": facts.open_check_error,
        "usage_digest": digest,
    }


def record_files(
    host: Host,
    files: Iterable[FileEntry],
    modes: dict[Store, AtimeMode],
    stores_read: set[str],
    now: datetime,
) -> None:
    """Write the new and changed usage rows and remove those of files gone from a store read.

    On PostgreSQL one statement: the report's rows as arrays (``unnest``), an upsert that
    rewrites a row only where a value differs, and the removal of the gone rows beside it.
    Elsewhere one SELECT, one upsert and one DELETE through the ORM.
    """
    rows = [
        (
            entry.store.value,
            entry.path,
            entry.atime_ns,
            modes.get(entry.store, AtimeMode.UNKNOWN).value,
            _holders(entry),
            entry.last_open_at,
            entry.last_open_by,
        )
        for entry in files
        if not entry.is_symlink
    ]
    if connection.vendor == "postgresql":
        _record_files_sql(host, rows, stores_read, now)
        return
    existing = {(u.store, u.path): u for u in FileUsage.objects.filter(host=host)}
    write, seen = [], set()
    for store, path, *rest in rows:
        key = (store, path)
        seen.add(key)
        values = dict(zip(_FIELDS, rest, strict=True))
        row = existing.get(key)
        if row is None:
            write.append(
                FileUsage(host=host, store=store, path=path, checked_at=now, watched_since=now, **values)
            )
        elif any(getattr(row, k) != v for k, v in values.items()):
            for k, v in values.items():
                setattr(row, k, v)
            row.checked_at = now
            write.append(row)
    gone = [row.pk for key, row in existing.items() if key not in seen and key[0] in stores_read]
    if gone:
        FileUsage.objects.filter(pk__in=gone).delete()
    if write:
        # watched_since is not among the updated fields: an upsert keeps the first sighting.
        FileUsage.objects.bulk_create(
            write,
            batch_size=2000,
            update_conflicts=True,
            unique_fields=["host", "store", "path"],
            update_fields=[*_FIELDS, "checked_at"],
        )


_RECORD_FILES_SQL = f"""
WITH new (store, path, atime_ns, atime_mode, open_by, last_open_at, last_open_by) AS (
    SELECT * FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::jsonb[],
                         %s::timestamptz[], %s::text[])
), gone AS (
    DELETE FROM {FileUsage._meta.db_table} u
    WHERE u.host_id = %s AND u.store = ANY(%s::text[])
      AND NOT EXISTS (SELECT 1 FROM new WHERE new.store = u.store AND new.path = u.path)
)
INSERT INTO {FileUsage._meta.db_table} AS u
    (host_id, store, path, atime_ns, atime_mode, open_by, last_open_at, last_open_by,
     checked_at, watched_since)
SELECT %s, store, path, atime_ns, atime_mode, open_by, last_open_at, last_open_by, %s, %s FROM new
ON CONFLICT (host_id, store, path) DO UPDATE SET
    atime_ns = excluded.atime_ns, atime_mode = excluded.atime_mode, open_by = excluded.open_by,
    last_open_at = excluded.last_open_at, last_open_by = excluded.last_open_by,
    checked_at = excluded.checked_at
WHERE (u.atime_ns, u.atime_mode, u.open_by, u.last_open_at, u.last_open_by)
      IS DISTINCT FROM (excluded.atime_ns, excluded.atime_mode, excluded.open_by,
                        excluded.last_open_at, excluded.last_open_by)
"""


def _record_files_sql(host: Host, rows: list[tuple], stores_read: set[str], now: datetime) -> None:
    # watched_since is not among the updated columns: an upsert keeps the first sighting.
    columns = list(zip(*rows, strict=True)) if rows else [()] * 7
    store, path, atime_ns, atime_mode, open_by, last_open_at, last_open_by = columns
    params: list[Any] = [
        list(store),
        list(path),
        list(atime_ns),
        list(atime_mode),
        [json.dumps(h) for h in open_by],
        list(last_open_at),
        list(last_open_by),
        host.pk,
        sorted(stores_read),
        host.pk,
        now,
        now,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_FILES_SQL, params)


def record_disk(host: Host, disk_free: int | None, disk_total: int | None, now: datetime) -> dict[str, Any]:
    """The day's point of the host's free-space series (the latest report of the day wins), and
    the refitted forecast's host columns and the capacity alerts' flags (empty when no disk was
    reported). ``host`` still holds the previous report's values: the alerts compare against
    them to tell a crossing once.

    On PostgreSQL one statement upserts the point and reads the window beside it (the window's
    other days are older rows the upsert does not touch); elsewhere an upsert and a SELECT.
    """
    if disk_free is None or disk_total is None:
        return {}
    day = timezone.localdate(now)
    if connection.vendor != "postgresql":
        DiskSample.objects.bulk_create(
            [DiskSample(host=host, day=day, disk_free=disk_free, disk_total=disk_total, at=now)],
            update_conflicts=True,
            unique_fields=["host", "day"],
            update_fields=["disk_free", "disk_total", "at"],
        )
        fields = forecast.host_fields(host)
        return {**fields, **alerts.check(host, disk_free, disk_total, fields)}
    with connection.cursor() as cursor:
        cursor.execute(_RECORD_DISK_SQL, [host.pk, day, disk_free, disk_total, now, host.pk, day])
        rows = cursor.fetchall()
    fields = forecast.fields(forecast.of_samples(sorted(rows, reverse=True)))
    return {**fields, **alerts.check(host, disk_free, disk_total, fields)}


_RECORD_DISK_SQL = f"""
WITH up AS (
    INSERT INTO {DiskSample._meta.db_table} (host_id, day, disk_free, disk_total, at)
    VALUES (%s, %s, %s, %s, %s)
    ON CONFLICT (host_id, day) DO UPDATE SET
        disk_free = excluded.disk_free, disk_total = excluded.disk_total, at = excluded.at
    RETURNING day, disk_free, disk_total
)
SELECT day, disk_free, disk_total FROM up
UNION ALL (
    SELECT day, disk_free, disk_total FROM {DiskSample._meta.db_table}
    WHERE host_id = %s AND day <> %s ORDER BY day DESC LIMIT {forecast.WINDOW_DAYS}
)
"""


# A heartbeat brings the day's free-space point up to date at most this often per host (and
# ingest process), and at once on a new day: between inventories the day's point lags its last
# report by at most this much, and a host costs the series about 24 statements a day
# instead of 2,880 (one per heartbeat).
HEARTBEAT_SAMPLE_EVERY = timedelta(hours=1)

# Host name -> when this process last sent the host's day point from a heartbeat. Only the
# statement's timing depends on it: the statement itself decides what to write, so another
# ingest process (or a restart, which forgets) costs at most one more statement, never a
# wrong point.
_heartbeat_sampled: dict[str, datetime] = {}


def record_heartbeat_disks(beats: Iterable[tuple[str, int | None, int | None]], now: datetime) -> None:
    """Heartbeats' free space, (host name, disk free, disk total) each, as the day's point of
    each host's series, which inventories otherwise keep alone: the days between two
    inventories (a host inventoried once a week, one whose inventories fail) still get their
    point, and the forecast its five points.

    Heartbeats are the hot path (333 a second at 10,000 hosts), so this is no statement at all
    for most of them (``HEARTBEAT_SAMPLE_EVERY``), and else one for all the beats given (ingest
    passes a batch's beats together), which writes only where a day's row is missing or holds
    another value from an earlier report. The latest report of the day wins, as for
    inventories; the forecast is fitted anew at the next inventory, which reads the window
    with its own point (its alerts need the host's row lock, which a heartbeat does not take).
    No lock either: the upsert is one atomic statement, and a beat ingested late (an older
    ``at``) never replaces a newer report's point.
    """
    day = timezone.localdate(now)
    due: dict[str, tuple[int, int]] = {}
    for host_name, disk_free, disk_total in beats:
        if disk_free is None or disk_total is None:
            continue
        last = _heartbeat_sampled.get(host_name)
        if (
            last is not None
            and timezone.localdate(last) == day
            and timedelta(0) <= now - last < HEARTBEAT_SAMPLE_EVERY
        ):
            continue
        due[host_name] = (disk_free, disk_total)  # one row per host: a later beat of it wins
    if not due:
        return
    if connection.vendor == "postgresql":
        names = list(due)
        with connection.cursor() as cursor:
            cursor.execute(
                _HEARTBEAT_DISK_SQL,
                [day, now, names, [due[n][0] for n in names], [due[n][1] for n in names]],
            )
    else:
        for host_name, (disk_free, disk_total) in due.items():
            _record_heartbeat_disk_orm(host_name, day, disk_free, disk_total, now)
    for host_name in due:
        _heartbeat_sampled[host_name] = now


def forget_heartbeat_samples() -> None:
    """Forget when each host's point was last sent (as a new ingest process starts)."""
    _heartbeat_sampled.clear()


# In autocommit and, like the heartbeat's own UPDATE (fleet/presence.py), without waiting for
# the WAL flush: a crash can at worst lose a point the next beat writes again.
_HEARTBEAT_DISK_SQL = f"""
INSERT INTO {DiskSample._meta.db_table} AS s (host_id, day, disk_free, disk_total, at)
SELECT h.id, n.day, b.disk_free, b.disk_total, n.at
FROM (SELECT %s::date AS day, %s::timestamptz AS at,
             set_config('synchronous_commit', 'off', true) AS async_commit) AS n,
     unnest(%s::text[], %s::bigint[], %s::bigint[]) AS b(name, disk_free, disk_total)
     JOIN {Host._meta.db_table} h ON h.name = b.name
ON CONFLICT (host_id, day) DO UPDATE SET
    disk_free = excluded.disk_free, disk_total = excluded.disk_total, at = excluded.at
WHERE s.at < excluded.at
  AND (s.disk_free, s.disk_total) IS DISTINCT FROM (excluded.disk_free, excluded.disk_total)
"""


def _record_heartbeat_disk_orm(
    host_name: str, day: date, disk_free: int, disk_total: int, now: datetime
) -> None:
    # SQLite (a development database): the same rule in two or three ORM statements.
    host_id = Host.objects.filter(name=host_name).values_list("pk", flat=True).first()
    if host_id is None:
        return
    values = {"disk_free": disk_free, "disk_total": disk_total, "at": now}
    _, created = DiskSample.objects.get_or_create(host_id=host_id, day=day, defaults=values)
    if not created:
        DiskSample.objects.filter(host_id=host_id, day=day, at__lt=now).exclude(
            disk_free=disk_free, disk_total=disk_total
        ).update(**values)


@dataclass(frozen=True)
class LastUse:
    """How a page or a policy should read a file's last use."""

    at: datetime | None
    source: str  # "open" (seen held), "atime", or "" (nothing trustworthy)
    trust: str  # "exact", "about" (relatime: within a day), "none" (noatime/unknown)
    by: str = ""

    @property
    def label(self) -> str:
        if self.source == "open":
            return f"seen open by {self.by}" if self.by else "seen open"
        if self.source == "atime":
            return "atime" if self.trust == "exact" else "about, relatime"
        return "not recorded"


def last_use(usage: FileUsage | None) -> LastUse:
    """The best evidence of a file's last use: seen open, else atime where the mount records it.

    Never mtime: a model installed a year ago and read every second is not "unused". On a
    relatime mount atime lags by up to a day ("about"); on noatime it says nothing.
    """
    if usage is None:
        return LastUse(None, "", "none")
    atime = (
        datetime.fromtimestamp(usage.atime_ns / 1e9, tz=UTC)
        if usage.atime_ns is not None and usage.atime_mode in (AtimeMode.RELATIME, AtimeMode.STRICTATIME)
        else None
    )
    trust = "exact" if usage.atime_mode == AtimeMode.STRICTATIME else "about"
    if usage.open_by:
        return LastUse(usage.checked_at, "open", "exact", holder_label(usage.open_by[0]))
    if usage.last_open_at is not None and (atime is None or usage.last_open_at >= atime):
        return LastUse(usage.last_open_at, "open", "exact", usage.last_open_by)
    if atime is not None:
        return LastUse(atime, "atime", trust)
    return LastUse(None, "", "none")


def holder_label(holder: dict) -> str:
    return f"{holder.get('program', '?')} (pid {holder.get('pid', '?')})"


def usages_for(host: Host) -> dict[tuple[str, str], FileUsage]:
    return {(u.store, u.path): u for u in FileUsage.objects.filter(host=host)}


STORE_TITLES = {"llm": "LLM folder", "ocr": "OCR resources"}
ATIME_TRUST = {
    "strictatime": "atime exact",
    "relatime": "atime about (updated at most daily)",
    "noatime": "atime not recorded (noatime)",
    "unknown": "atime mode unknown",
}


def store_rows(host: Host) -> list[dict]:
    """The host's stores for its page: title, folder, state and what its atime is worth."""
    rows = []
    for raw in host.stores or []:
        store = raw.get("store", "llm")
        rows.append(
            {
                "store": store,
                "title": STORE_TITLES.get(store, store),
                "root": raw.get("root", ""),
                "state": raw.get("state", "unknown"),
                "error": raw.get("error", ""),
                "atime_mode": raw.get("atime_mode", "unknown"),
                "atime_trust": ATIME_TRUST.get(raw.get("atime_mode", "unknown"), ""),
                "mount_point": raw.get("mount_point", ""),
            }
        )
    return rows
