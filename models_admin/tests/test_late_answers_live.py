"""A late answer with real processes (issue case 3): the dashboard gave up on a request while
its host's agent was down; the agent, started again, does the order it finds waiting on its
queue, and the real ingest worker applies the answer whenever it comes.

Once such an answer was thrown away: the request showed ``failed`` and 0 bytes while the file
sat in the host's quarantine.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from models_admin.approvals import workflow
from models_admin.fleet import hosts
from models_admin.models import AuditEvent, Host, PruneRequest
from workers.prune import QUARANTINE_DIR

from .processes import Fleet, running_fleet, unique_host_name

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
A = AuditEvent.Action
State = PruneRequest.State


@pytest.fixture
def fleet(tmp_path: Path) -> Iterator[Fleet]:
    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v1.gguf").write_bytes(b"english model v1")
    (models / "old_fr_ocr_v1.bin").write_bytes(b"old french model")
    with running_fleet(unique_host_name("late"), models, tmp_path) as running:
        yield running


def test_an_answer_after_the_dashboard_gave_up_moves_the_request_to_its_true_state(
    fleet: Fleet, operator, approver, settings
):
    host = fleet.wait_for(
        "the first inventory",
        lambda: Host.objects.filter(name=fleet.host, current_snapshot__isnull=False).first(),
    )
    host = hosts.accept_host(host, approver)
    fleet.agent.stop()  # the host goes away; its queue keeps what is sent to it
    old = host.current_snapshot.files.get(path="old_fr_ocr_v1.bin")
    request = workflow.propose(host=host, files=[old], reason="stale", user=operator)
    workflow.approve(request.id, approver)
    request.refresh_from_db()
    assert request.state == State.DISPATCHED

    # No answer through every re-send: the dashboard gives up.
    settings.OCRDASH = {**settings.OCRDASH, "RESEND_AFTER_MINUTES": 15, "MAX_DISPATCH_ATTEMPTS": 1}
    PruneRequest.objects.filter(pk=request.pk).update(dispatched_at=timezone.now() - timedelta(minutes=20))
    assert workflow.resend_unanswered() == (0, 1)
    request.refresh_from_db()
    assert request.state == State.FAILED and request.bytes_reclaimed == 0

    fleet.agent.start()  # back: it does the order waiting on its queue and answers, late

    request = fleet.wait_for(
        "the late answer",
        lambda: PruneRequest.objects.filter(id=request.id, state=State.COMPLETED).first(),
    )
    item = request.items.get()
    assert item.outcome == "quarantined" and request.bytes_reclaimed == len(b"old french model")
    assert (fleet.models_dir / QUARANTINE_DIR / request.id.hex / "old_fr_ocr_v1.bin").exists()
    [late] = AuditEvent.objects.filter(action=A.LATE_ANSWER, object_id=str(request.id))
    assert late.details["was"] == State.FAILED and late.details["state"] == State.COMPLETED
    # Restorable from the pages, as any quarantined file.
    restore = workflow.propose_restore(prune_request=request, user=operator, reason="back")
    assert [i.path for i in restore.items.all()] == ["old_fr_ocr_v1.bin"]
