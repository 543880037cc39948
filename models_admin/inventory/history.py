"""What changed between inventories, and where else in the fleet a file lives.

Files are compared by path: a path present in both snapshots whose identity (size, mtime,
hash, link) differs is "changed". Every function here issues a fixed number of queries,
whatever the number of files, because the host page calls them for hosts holding thousands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db import connection
from django.db.models import F

from ..models import Host, ModelFile, ModelSighting, Snapshot

# The columns that make a file "the same file"; known_to_aspose is compared too because it
# changes what deleting the file would break.
_IDENTITY = ("size", "mtime_ns", "sha256", "is_symlink", "known_to_aspose")


@dataclass
class SnapshotDiff:
    added: list[ModelFile] = field(default_factory=list)
    removed: list[ModelFile] = field(default_factory=list)
    # (before, after) pairs with the same path
    changed: list[tuple[ModelFile, ModelFile]] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    @property
    def bytes_delta(self) -> int:
        return (
            sum(f.size for f in self.added)
            - sum(f.size for f in self.removed)
            + sum(after.size - before.size for before, after in self.changed)
        )


def _differs(a: ModelFile, b: ModelFile) -> bool:
    return any(getattr(a, k) != getattr(b, k) for k in _IDENTITY)


def diff_files(before: Iterable[ModelFile], after: Iterable[ModelFile]) -> SnapshotDiff:
    old = {f.path: f for f in before}
    new = {f.path: f for f in after}
    return SnapshotDiff(
        added=[new[p] for p in sorted(new.keys() - old.keys())],
        removed=[old[p] for p in sorted(old.keys() - new.keys())],
        changed=[(old[p], new[p]) for p in sorted(old.keys() & new.keys()) if _differs(old[p], new[p])],
    )


def diff_snapshots(a: Snapshot | None, b: Snapshot) -> SnapshotDiff:
    """What changed from ``a`` (older; None = nothing) to ``b``. Two queries at most."""
    before = list(a.files.all()) if a is not None else []
    return diff_files(before, b.files.all())


@dataclass(frozen=True)
class ChangeSummary:
    added: int
    removed: int
    changed: int
    first: bool = False  # the oldest shown snapshot with nothing before it


def change_summaries(snapshots: Sequence[Snapshot]) -> dict[int, ChangeSummary]:
    """+added, -removed, ~changed of each snapshot against the one just before it.

    ``snapshots`` are one host's, newest first (the host page's history). One query for
    the snapshot before the oldest shown, one for all their files.
    """
    if not snapshots:
        return {}
    ordered = sorted(snapshots, key=lambda s: (s.taken_at, s.id))
    oldest = ordered[0]
    previous = (
        Snapshot.objects.filter(host_id=oldest.host_id, taken_at__lte=oldest.taken_at)
        .exclude(id=oldest.id)
        .exclude(taken_at=oldest.taken_at, id__gt=oldest.id)
        .order_by("-taken_at", "-id")
        .only("id")
        .first()
    )
    chain: list[Snapshot | None] = [previous, *ordered]
    ids = [s.id for s in chain if s is not None]
    files: dict[int, list[ModelFile]] = {i: [] for i in ids}
    for f in ModelFile.objects.filter(snapshot_id__in=ids).only("snapshot_id", "path", *_IDENTITY):
        files[f.snapshot_id].append(f)
    result = {}
    for before, after in zip(chain, ordered, strict=False):  # each snapshot after the one before it
        d = diff_files(files[before.id] if before else [], files[after.id])
        result[after.id] = ChangeSummary(len(d.added), len(d.removed), len(d.changed), first=before is None)
    return result


def current_files():
    """Files of every host's current snapshot (what the fleet holds now), retired hosts left out."""
    return ModelFile.objects.filter(snapshot_id=F("snapshot__host__current_snapshot_id")).exclude(
        snapshot__host__status=Host.Status.RETIRED
    )


def current_copies(key: str, by_hash: bool, offset: int, limit: int) -> list[ModelFile]:
    """One page of the current copies of a model (by file name or by sha256), by host name
    then path, with their snapshot and host loaded. Two queries whatever the fleet's size.

    The page's hosts come off the model's sightings (``inventory/lifecycle.py``), the hosts
    holding it now in name order on the (kind, key, host_name) index, and each one's copies
    from its current snapshot on the (snapshot, name) index: a page reads its own hosts. (It
    walked every host in name order until the page was full: 600 hosts for a model on 15% of
    10,000, all 10,000 for a rare one.)
    """
    column = "sha256" if by_hash else "name"
    kind = ModelSighting.Kind.SHA256 if by_hash else ModelSighting.Kind.NAME
    # Each host holding it now has at least one copy, so the first offset + limit of them hold
    # the page: read in name order off the sightings' index under their own LIMIT, and each
    # one's host row and copies looked up on their own (LATERAL; OFFSET 0 keeps PostgreSQL
    # from flattening them). Left to itself the planner misjudged a popular name's rows and
    # hashed every host with every copy of it (14 ms, not 1).
    sql = f"""
        SELECT f.id FROM (
            SELECT s.host_name, h.current_snapshot_id FROM {ModelSighting._meta.db_table} s
            CROSS JOIN LATERAL (
                SELECT current_snapshot_id FROM {Host._meta.db_table}
                WHERE id = s.host_id AND status <> %s OFFSET 0
            ) h
            WHERE s.kind = %s AND s.key = %s AND s.present
            ORDER BY s.host_name LIMIT %s
        ) p
        CROSS JOIN LATERAL (
            SELECT c.id, c.path FROM {ModelFile._meta.db_table} c
            WHERE c.snapshot_id = p.current_snapshot_id AND c.{column} = %s
            OFFSET 0  -- kept a subquery, so it stays one lookup per host
        ) f
        ORDER BY p.host_name, f.path, f.id
        LIMIT %s OFFSET %s
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [Host.Status.RETIRED.value, kind.value, key, offset + limit, key, limit, offset])
        ids = [row[0] for row in cursor.fetchall()]
    # Only what a copy's row shows: a page is 100 rows, and each host's whole row (its dates,
    # labels and stores) cost more to load than the query that found them.
    files = (
        ModelFile.objects.filter(id__in=ids)
        .select_related("snapshot__host")
        .only(*COPY_FIELDS, "snapshot__host__name")
        .in_bulk()
    )
    return [files[i] for i in ids]


# The fields of a copy that the model page shows (model.html), with its host's name.
COPY_FIELDS = ("path", "name", "size", "mtime_ns", "sha256", "known_to_aspose", "is_symlink", "store")


class CurrentCopies:
    """The current copies of a model as a sequence a Paginator can slice (``current_copies``
    per page); its length is the summary's copy count, so no count runs over file rows."""

    def __init__(self, key: str, by_hash: bool, count: int) -> None:
        self.key, self.by_hash, self.count = key, by_hash, count

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, index: slice) -> list[ModelFile]:
        start, stop, _ = index.indices(self.count)
        return current_copies(self.key, self.by_hash, start, max(stop - start, 0))


def hashes_elsewhere(host: Host, sha256s: Iterable[str]) -> set[str]:
    """Which of ``sha256s`` some other (non-retired) host currently holds. One query.

    A hash not in the result is the fleet's last copy: deleting it means fetching it again.
    """
    wanted = {s for s in sha256s if s}
    if not wanted:
        return set()
    return set(
        current_files()
        .filter(sha256__in=wanted, is_symlink=False)
        .exclude(snapshot__host_id=host.id)
        .values_list("sha256", flat=True)
        .distinct()
    )
