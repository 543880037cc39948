"""The whole loop with real processes: a real agent worker and a real ingest worker on the
real broker, the dashboard's workflow in between, and a file that really moves on disk.

How the worker processes share this test's database and queues: see ``processes.py``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from models_admin.approvals import workflow
from models_admin.capacity import policies
from models_admin.fleet import hosts
from models_admin.models import AuditEvent, Host, PruneRequest
from workers.prune import QUARANTINE_DIR

from .processes import Fleet, running_fleet, unique_host_name

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
A = AuditEvent.Action


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[Fleet]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v1.gguf").write_bytes(b"english model v1")
    (models / "old_fr_ocr_v1.bin").write_bytes(b"old french model")
    with running_fleet(unique_host_name("loop"), models, tmp_path) as fleet:
        yield fleet


def test_report_propose_approve_prune_and_report_back(loop: Fleet, operator, approver, approver2):
    name, models, wait_for = loop.host, loop.models_dir, loop.wait_for

    # 1. The agent announces itself; ingest registers a pending host with its snapshot.
    host = wait_for(
        "the first inventory",
        lambda: Host.objects.filter(name=name, current_snapshot__isnull=False).first(),
    )
    assert host.status == Host.Status.PENDING
    assert host.active_key is not None  # enrolled with the token on its first report
    assert set(host.current_snapshot.files.values_list("path", flat=True)) == {
        "en_ocr_v1.gguf",
        "old_fr_ocr_v1.bin",
    }
    first_snapshot = host.current_snapshot_id
    host = hosts.accept_host(host, approver)

    # 2. The tutorial's rule proposes the old_ model; its proposer may not approve it.
    run = policies.run_policy(host, "prefix", user=approver2, reason="tutorial cleanup")
    request = run.request
    assert [i.path for i in request.items.all()] == ["old_fr_ocr_v1.bin"]
    with pytest.raises(workflow.NotAllowed):
        workflow.approve(request.id, approver2)

    # 3. A second person approves; the order goes out when the approval commits.
    workflow.approve(request.id, approver, "ok")

    # 4. The agent quarantines the file and reports outcomes and a fresh inventory.
    request = wait_for(
        "the request to finish",
        lambda: PruneRequest.objects.filter(id=request.id, finished_at__isnull=False).first(),
    )
    assert request.state == PruneRequest.State.COMPLETED, request.items.values("path", "outcome", "detail")
    item = request.items.get()
    assert item.outcome == "quarantined" and item.bytes_reclaimed == len(b"old french model")
    assert not (models / "old_fr_ocr_v1.bin").exists()
    assert (
        models / QUARANTINE_DIR / request.id.hex / "old_fr_ocr_v1.bin"
    ).read_bytes() == b"old french model"
    assert (models / "en_ocr_v1.gguf").exists()

    host = wait_for(
        "the inventory after pruning",
        lambda: Host.objects.filter(name=name).exclude(current_snapshot_id=first_snapshot).first(),
    )
    assert list(host.current_snapshot.files.values_list("path", flat=True)) == ["en_ocr_v1.gguf"]

    # 5. Every step is in the audit trail, with who did it.
    trail = set(AuditEvent.objects.filter(host=name).values_list("action", "actor"))
    agent = f"agent:{name}"
    for expected in [
        (A.HOST_REGISTERED, agent),
        (A.HOST_ENROLLED, agent),
        (A.REPORT_INGESTED, agent),
        (A.HOST_ACCEPTED, approver.username),
        (A.REQUEST_PROPOSED, approver2.username),
        (A.REQUEST_APPROVED, approver.username),
        (A.REQUEST_DISPATCHED, "system"),
        (A.ITEM_OUTCOME, agent),
        (A.REQUEST_FINISHED, agent),
    ]:
        assert expected in trail, expected
    assert (A.REQUEST_APPROVED, approver2.username) not in trail


LATIN1_NAME = b"caf\xe9_model.bin"  # "café_model.bin" as an old zip file wrote it: not UTF-8


@pytest.fixture
def byte_loop(tmp_path: Path) -> Iterator[Fleet]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v1.gguf").write_bytes(b"english model v1")
    with open(bytes(models) + b"/" + LATIN1_NAME, "wb") as fh:
        fh.write(b"latin-1 named model")
    with running_fleet(unique_host_name("bytes"), models, tmp_path) as fleet:
        yield fleet


def test_a_file_name_that_is_not_utf8_is_inventoried_pruned_and_restored(
    byte_loop: Fleet, operator, approver
):
    """Case 4: a non-UTF-8 name once froze the host's inventory and failed every prune of it."""
    name, models, wait_for = byte_loop.host, byte_loop.models_dir, byte_loop.wait_for
    raw_path = bytes(models) + b"/" + LATIN1_NAME
    host = wait_for(
        "the first inventory",
        lambda: Host.objects.filter(name=name, current_snapshot__isnull=False).first(),
    )
    # Readable on the page, lossless underneath.
    assert set(host.current_snapshot.files.values_list("path", flat=True)) == {
        "en_ocr_v1.gguf",
        "caf\\xe9_model.bin",
    }
    host = hosts.accept_host(host, approver)
    files = list(host.current_snapshot.files.filter(path="caf\\xe9_model.bin"))
    request = workflow.propose(host=host, files=files, reason="old zip leftovers", user=operator)
    workflow.approve(request.id, approver, "ok")
    request = wait_for(
        "the prune to finish",
        lambda: PruneRequest.objects.filter(id=request.id, finished_at__isnull=False).first(),
    )
    assert request.state == PruneRequest.State.COMPLETED, list(request.items.values("outcome", "detail"))
    assert request.items.get().outcome == "quarantined"
    quarantined = bytes(models) + f"/{QUARANTINE_DIR}/{request.id.hex}/".encode() + LATIN1_NAME
    assert not os.path.exists(raw_path)
    with open(quarantined, "rb") as fh:
        assert fh.read() == b"latin-1 named model"

    restore = workflow.propose_restore(prune_request=request, user=operator, reason="needed after all")
    workflow.approve(restore.id, approver, "ok")
    restore = wait_for(
        "the restore to finish",
        lambda: PruneRequest.objects.filter(id=restore.id, finished_at__isnull=False).first(),
    )
    assert restore.state == PruneRequest.State.COMPLETED, list(restore.items.values("outcome", "detail"))
    with open(raw_path, "rb") as fh:
        assert fh.read() == b"latin-1 named model"
    host = wait_for(
        "the inventory after the restore",
        lambda: (
            Host.objects.filter(
                name=name,
                current_snapshot__files__path="caf\\xe9_model.bin",
                current_snapshot__report_id__gt="",
            )
            .exclude(current_snapshot=host.current_snapshot)
            .first()
        ),
    )
    assert host.last_error == ""
