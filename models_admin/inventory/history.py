"""What changed between inventories, and where else in the fleet a file lives.

Files are compared by path: a path present in both snapshots whose identity (size, mtime,
hash, link) differs is "changed". Every function here issues a fixed number of queries,
whatever the number of files, because the host page calls them for hosts holding thousands.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.db.models import F

from ..models import Host, ModelFile, Snapshot

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
