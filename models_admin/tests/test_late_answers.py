"""Late answers (issue case 3): an answer is applied whenever it comes.

Once, an answer that arrived after the dashboard had given up (no answer after the last
re-send) was thrown away: the request showed failed and 0 bytes while the file sat in
quarantine on the host.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, PruneItem, PruneRequest
from workers.schema import ItemOutcome, Outcome, PruneMode, PruneReport

from .conftest import ingest

pytestmark = pytest.mark.django_db
State = PruneRequest.State
A = AuditEvent.Action


def given_up(request: PruneRequest, settings) -> PruneRequest:
    settings.OCRDASH = {**settings.OCRDASH, "RESEND_AFTER_MINUTES": 15, "MAX_DISPATCH_ATTEMPTS": 1}
    PruneRequest.objects.filter(pk=request.pk).update(dispatched_at=timezone.now() - timedelta(minutes=20))
    assert workflow.resend_unanswered() == (0, 1)
    request.refresh_from_db()
    assert request.state == State.FAILED and request.bytes_reclaimed == 0
    return request


def answer(request: PruneRequest, outcomes: dict[str, Outcome]) -> PruneReport:
    items = {i.path: i for i in request.items.all()}
    return PruneReport(
        host=request.host.name,
        request_id=request.id.hex,
        mode=PruneMode.QUARANTINE,
        freed=True,
        outcomes=[
            ItemOutcome(
                path=p,
                outcome=o,
                bytes_reclaimed=items[p].size if o is Outcome.QUARANTINED else 0,
                detail=f".ocrdash-quarantine/{request.id.hex}/{p}" if o is Outcome.QUARANTINED else "",
            )
            for p, o in outcomes.items()
        ],
    )


def test_a_late_answer_moves_a_failed_request_to_its_true_state(make_host, dispatched_request, settings):
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50})
    request = given_up(dispatched_request(host), settings)

    result = ingest(answer(request, {"old_a.bin": Outcome.QUARANTINED, "old_b.bin": Outcome.QUARANTINED}))

    assert result.status == "accepted"
    request.refresh_from_db()
    assert request.state == State.COMPLETED
    assert request.bytes_reclaimed == 150
    assert set(request.items.values_list("outcome", flat=True)) == {PruneItem.Outcome.QUARANTINED}
    [late] = AuditEvent.objects.filter(action=A.LATE_ANSWER, object_id=str(request.id))
    assert late.details["was"] == State.FAILED and late.details["state"] == State.COMPLETED
    assert late.details["changed_items"] == 2
    # The item events say they came late too, so the history does not look like a normal run.
    assert AuditEvent.objects.filter(action=A.ITEM_OUTCOME, object_id=str(request.id)).count() == 2
    assert all(
        e.details.get("late")
        for e in AuditEvent.objects.filter(action=A.ITEM_OUTCOME, object_id=str(request.id))
    )


def test_a_late_answer_completes_a_partial_one_and_a_repeat_changes_nothing(
    make_host, dispatched_request, settings
):
    host = make_host("ocr-1", {"old_a.bin": 100, "old_b.bin": 50})
    request = dispatched_request(host)
    ingest(answer(request, {"old_a.bin": Outcome.QUARANTINED, "old_b.bin": Outcome.ERROR}))
    request.refresh_from_db()
    assert request.state == State.PARTIAL

    ingest(answer(request, {"old_a.bin": Outcome.QUARANTINED, "old_b.bin": Outcome.QUARANTINED}))
    request.refresh_from_db()
    assert request.state == State.COMPLETED and request.bytes_reclaimed == 150

    # An older answer arriving after the newer one never undoes a success, and records nothing.
    before = AuditEvent.objects.count()
    ingest(answer(request, {"old_a.bin": Outcome.ERROR, "old_b.bin": Outcome.ERROR}))
    request.refresh_from_db()
    assert request.state == State.COMPLETED and request.bytes_reclaimed == 150
    assert AuditEvent.objects.filter(action=A.LATE_ANSWER).count() == 1
    assert AuditEvent.objects.count() == before + 1  # only the report_ingested of that report
