"""Builders for a known history: snapshots and prune requests at explicit times.

The report tests compare with numbers computed by hand, so every row here gets the
timestamp the test names; nothing depends on "now".
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from models_admin.inventory import lifecycle, rollup
from models_admin.models import Host, ModelFile, PruneItem, PruneRequest, Snapshot


def at(text: str) -> datetime:
    """at("2026-03-02 10:00") -> aware UTC datetime (the test settings' time zone)."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def file_sha(path: str, size: int) -> str:
    # A file whose size changes is a different file: its hash changes with it.
    return hashlib.sha256(f"{path}:{size}".encode()).hexdigest()


def host(name: str, status: str = Host.Status.ACTIVE) -> Host:
    return Host.objects.create(name=name, status=status, model_dir=f"/srv/{name}/models")


def snapshot(
    h: Host, taken_at: datetime, files: dict[str, int], last_seen_at: datetime | None = None
) -> Snapshot:
    """Store one inventory; the newest one becomes the host's current snapshot. The reports'
    daily rollup and the models' sightings follow as ingest keeps them (rebuilt when a test
    stores an older one)."""
    replaced = h.snapshots.order_by("-taken_at", "-id").first()
    digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
    snap = Snapshot.objects.create(
        host=h,
        taken_at=taken_at,
        last_seen_at=last_seen_at or taken_at,
        digest=digest,
        file_count=len(files),
        total_bytes=sum(files.values()),
    )
    ModelFile.objects.bulk_create(
        ModelFile(
            snapshot=snap,
            path=path,
            name=path.rsplit("/", 1)[-1],
            size=size,
            mtime_ns=1_700_000_000_000_000_000 + size,
            sha256=file_sha(path, size),
        )
        for path, size in files.items()
    )
    newest = h.snapshots.order_by("-taken_at", "-id").first()
    if newest.id == snap.id:
        h.current_snapshot = snap
        h.file_count, h.total_bytes = snap.file_count, snap.total_bytes
        h.save(update_fields=["current_snapshot", "file_count", "total_bytes"])
        rollup.record(snap, replaced)
        lifecycle.snapshot_changed(replaced.id if replaced is not None else None, snap.id)
    else:
        rollup.rebuild()
        lifecycle.rebuild([h.id])
    return snap


def prune(
    h: Host,
    items: list[tuple[str, int, str, int]],
    *,
    created_at: datetime,
    requested_by=None,
    decided_by=None,
    decided_at: datetime | None = None,
    finished_at: datetime | None = None,
    state: str = PruneRequest.State.COMPLETED,
    kind: str = PruneRequest.Kind.PRUNE,
    comment: str = "",
    snap: Snapshot | None = None,
) -> PruneRequest:
    """items: (path, size, outcome, bytes_reclaimed). Finished items finish at ``finished_at``."""
    request = PruneRequest.objects.create(
        host=h,
        kind=kind,
        state=state,
        reason="stale model",
        snapshot=snap,
        requested_by=requested_by,
        created_at=created_at,
        expires_at=created_at,
        decided_by=decided_by,
        decided_at=decided_at,
        decision_comment=comment,
        finished_at=finished_at,
        bytes_reclaimed=sum(i[3] for i in items),
    )
    PruneItem.objects.bulk_create(
        PruneItem(
            request=request,
            path=path,
            size=size,
            mtime_ns=1_700_000_000_000_000_000 + size,
            sha256=file_sha(path, size),
            outcome=outcome,
            bytes_reclaimed=reclaimed,
            finished_at=finished_at if outcome != "pending" else None,
        )
        for path, size, outcome, reclaimed in items
    )
    return request
