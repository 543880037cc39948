"""The per-model summary of what the fleet holds now (ModelSummary, ModelVersion).

Kept by deltas: whenever a host's current files change (a new snapshot, the host retired or
taken back) the difference between its old and new files is added to the rows of the names
and identities it touches, in the same transaction. Adding deltas commutes, so two hosts'
reports may do it at once; each upsert visits its rows sorted by key, so two transactions
touching the same names lock them in the same order and cannot deadlock.

``rebuild`` recomputes everything from the current snapshots (the migration that made the
tables, and ``manage.py rebuild_model_summary`` if a summary were ever doubted).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, F, Q, Sum

from ..models import Host, ModelFile, ModelSummary, ModelVersion

# (name, sha256, size, known_to_aspose) of one file.
Row = tuple[str, str, int, bool]


def _tally(rows: Iterable[Row]) -> tuple[dict[str, list[int]], dict[tuple[str, str], list[int]]]:
    names: dict[str, list[int]] = {}
    versions: dict[tuple[str, str], list[int]] = {}
    for name, sha256, size, known in rows:
        n = names.setdefault(name, [0, 0, 0])
        n[0], n[1], n[2] = n[0] + 1, n[1] + size, n[2] + bool(known)
        v = versions.setdefault((name, sha256), [0, 0])
        v[0], v[1] = v[0] + 1, v[1] + size
    return names, versions


def apply(old: Iterable[Row], new: Iterable[Row]) -> int:
    """Add what changed between one host's ``old`` and ``new`` current files. Returns the
    number of summary rows touched (0 when the host holds the same models as before)."""
    old_names, old_versions = _tally(old)
    new_names, new_versions = _tally(new)
    name_rows = []
    for name in sorted(old_names.keys() | new_names.keys()):
        o, n = old_names.get(name, [0, 0, 0]), new_names.get(name, [0, 0, 0])
        if o != n:
            hosts = (n[0] > 0) - (o[0] > 0)
            name_rows.append((name, hosts, n[0] - o[0], n[1] - o[1], n[2] - o[2]))
    version_rows = []
    for key in sorted(old_versions.keys() | new_versions.keys()):
        o, n = old_versions.get(key, [0, 0]), new_versions.get(key, [0, 0])
        if o != n:
            version_rows.append((*key, (n[0] > 0) - (o[0] > 0), n[0] - o[0], n[1] - o[1]))
    if name_rows:
        _upsert(ModelSummary, ["name"], ["hosts", "copies", "bytes", "known"], name_rows)
    if version_rows:
        _upsert(ModelVersion, ["name", "sha256"], ["hosts", "copies", "bytes"], version_rows)
    gone = [row[0] for row in name_rows if row[2] < 0]
    if gone:
        # Names no host holds any more leave the index (one statement per table, rare).
        ModelSummary.objects.filter(name__in=gone, copies__lte=0).delete()
        ModelVersion.objects.filter(name__in=gone, copies__lte=0).delete()
    return len(name_rows) + len(version_rows)


def _upsert(model, keys: list[str], sums: list[str], rows: list[tuple]) -> None:
    """INSERT ... ON CONFLICT DO UPDATE adding the deltas (PostgreSQL and SQLite alike)."""
    table = connection.ops.quote_name(model._meta.db_table)
    columns = keys + sums
    values = ", ".join(["(" + ", ".join(["%s"] * len(columns)) + ")"] * len(rows))
    updates = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in sums)
    sql = (
        f"INSERT INTO {table} ({', '.join(columns)}) VALUES {values}"
        f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {updates}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [value for row in rows for value in row])


def snapshot_changed(old_snapshot_id: int | None, new_snapshot_id: int) -> int:
    """A host's current files went from one snapshot's to another's (both stored): add the
    difference. Returns the number of summary rows touched.

    On PostgreSQL one statement does what ``apply`` does (both tallies, both upserts, sorted
    by key in byte order as ``apply`` sorts, so the lock order stays the same), plus one more
    only when a name or identity is held by no host any more. Elsewhere ``apply``.
    """
    if connection.vendor != "postgresql":
        return apply(snapshot_rows(old_snapshot_id), snapshot_rows(new_snapshot_id))
    with connection.cursor() as cursor:
        cursor.execute(_SNAPSHOT_CHANGED_SQL, {"old": old_snapshot_id, "new": new_snapshot_id})
        touched = cursor.fetchall()
        gone_names = sorted(pk for table, pk, copies in touched if table == "n" and copies <= 0)
        gone_versions = sorted(pk for table, pk, copies in touched if table == "v" and copies <= 0)
        if gone_names or gone_versions:
            # Our upsert holds these rows' locks until commit: no other report moves them first.
            # By primary key: a name matches several identities, and with the names the planner
            # took a scan of the whole identities table for 50 names (3.6 ms a report, growing).
            cursor.execute(_DELETE_GONE_SQL, [gone_names, gone_versions])
    return len(touched)


_SUMMARY = ModelSummary._meta.db_table
_VERSION = ModelVersion._meta.db_table
_FILE = ModelFile._meta.db_table
_SNAPSHOT_CHANGED_SQL = f"""
WITH rows AS (
    SELECT name, sha256, size, known_to_aspose AS known, 1 AS sign FROM {_FILE}
    WHERE snapshot_id = %(new)s
    UNION ALL
    SELECT name, sha256, size, known_to_aspose, -1 FROM {_FILE} WHERE snapshot_id = %(old)s
), names AS (
    SELECT name, (bool_or(sign > 0))::int - (bool_or(sign < 0))::int AS hosts, sum(sign) AS copies,
           sum(sign * size) AS bytes, sum(sign * known::int) AS known
    FROM rows GROUP BY name
), versions AS (
    SELECT name, sha256, (bool_or(sign > 0))::int - (bool_or(sign < 0))::int AS hosts,
           sum(sign) AS copies, sum(sign * size) AS bytes
    FROM rows GROUP BY name, sha256
), up_names AS (
    INSERT INTO {_SUMMARY} AS t (name, hosts, copies, bytes, known)
    SELECT name, hosts, copies, bytes, known FROM names
    WHERE copies <> 0 OR bytes <> 0 OR known <> 0 ORDER BY name COLLATE "C"
    ON CONFLICT (name) DO UPDATE SET hosts = t.hosts + excluded.hosts,
        copies = t.copies + excluded.copies, bytes = t.bytes + excluded.bytes,
        known = t.known + excluded.known
    RETURNING id, copies
), up_versions AS (
    INSERT INTO {_VERSION} AS t (name, sha256, hosts, copies, bytes)
    SELECT name, sha256, hosts, copies, bytes FROM versions
    WHERE copies <> 0 OR bytes <> 0 ORDER BY name COLLATE "C", sha256 COLLATE "C"
    ON CONFLICT (name, sha256) DO UPDATE SET hosts = t.hosts + excluded.hosts,
        copies = t.copies + excluded.copies, bytes = t.bytes + excluded.bytes
    RETURNING id, copies
)
SELECT 'n', id, copies FROM up_names UNION ALL SELECT 'v', id, copies FROM up_versions
"""
_DELETE_GONE_SQL = f"""
WITH names AS (DELETE FROM {_SUMMARY} WHERE id = ANY(%s::bigint[]) AND copies <= 0)
DELETE FROM {_VERSION} WHERE id = ANY(%s::bigint[]) AND copies <= 0
"""


def snapshot_rows(snapshot_id: int | None) -> list[Row]:
    if snapshot_id is None:
        return []
    return list(
        ModelFile.objects.filter(snapshot_id=snapshot_id).values_list(
            "name", "sha256", "size", "known_to_aspose"
        )
    )


def host_left(host: Host) -> None:
    """A host leaves the summary (retired): its current files no longer count."""
    apply(snapshot_rows(host.current_snapshot_id), [])


def host_returned(host: Host) -> None:
    """A retired host is taken back: its current files count again."""
    apply([], snapshot_rows(host.current_snapshot_id))


def on_host_retired(sender: Any, host: Host, **kwargs: Any) -> None:
    """Receiver of ``host_retired`` (under the host's lock): its files leave the summary."""
    host_left(host)


def on_host_returned(sender: Any, host: Host, **kwargs: Any) -> None:
    """Receiver of ``host_returned`` (under the host's lock): its files count again."""
    host_returned(host)


def rebuild() -> None:
    """Recompute both tables from the current snapshots of hosts that are not retired."""
    current = ModelFile.objects.filter(snapshot_id=F("snapshot__host__current_snapshot_id")).exclude(
        snapshot__host__status=Host.Status.RETIRED
    )
    names = current.values("name").annotate(
        n_hosts=Count("snapshot__host", distinct=True),
        n_copies=Count("id"),
        n_bytes=Sum("size"),
        n_known=Count("id", filter=Q(known_to_aspose=True)),
    )
    versions = current.values("name", "sha256").annotate(
        n_hosts=Count("snapshot__host", distinct=True), n_copies=Count("id"), n_bytes=Sum("size")
    )
    with transaction.atomic():
        ModelSummary.objects.all().delete()
        ModelVersion.objects.all().delete()
        ModelSummary.objects.bulk_create(
            (
                ModelSummary(
                    name=r["name"],
                    hosts=r["n_hosts"],
                    copies=r["n_copies"],
                    bytes=r["n_bytes"],
                    known=r["n_known"],
                )
                for r in names.order_by()
            ),
            batch_size=2000,
        )
        ModelVersion.objects.bulk_create(
            (
                ModelVersion(
                    name=r["name"],
                    sha256=r["sha256"],
                    hosts=r["n_hosts"],
                    copies=r["n_copies"],
                    bytes=r["n_bytes"],
                )
                for r in versions.order_by()
            ),
            batch_size=2000,
        )


__all__ = ["apply", "host_left", "host_returned", "rebuild", "snapshot_changed", "snapshot_rows"]
