"""The state machine against the real broker: two-person rule, dispatch after commit,
claims, expiry, resend and give-up, a broker that is down."""

from __future__ import annotations

import socket
from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, Host, PruneItem, PruneRequest
from ocrdash.celery import app

pytestmark = pytest.mark.django_db
State = PruneRequest.State
A = AuditEvent.Action
HOST = "wf-ocr-1"


@pytest.fixture
def queue(host_queue):
    return host_queue(HOST)


@pytest.fixture
def proposed(make_host, operator, queue):
    host = make_host(HOST)
    return workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="r", user=operator
    )


def dispatched(request: PruneRequest, *, minutes_ago: float, attempts: int) -> None:
    PruneRequest.objects.filter(id=request.id).update(
        state=State.DISPATCHED,
        dispatched_at=timezone.now() - timedelta(minutes=minutes_ago),
        dispatch_attempts=attempts,
    )


@pytest.fixture
def dead_broker():
    """Point the Celery app at a closed port, then back. Settings alone do not reach the app's
    cached connection pools, hence the pool reset on both sides."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free now, and nothing listens on it
    saved = app.conf.broker_url

    def reset_pools():
        app._pool = None  # type: ignore[attr-defined]  # Celery's private connection pools
        app.amqp._producer_pool = None  # type: ignore[attr-defined]

    app.conf.update(broker_url=f"redis://127.0.0.1:{port}/15")
    reset_pools()
    yield
    app.conf.update(broker_url=saved)
    reset_pools()


def test_it_refuses_self_approval(make_host, approver2, queue):
    host = make_host(HOST)
    request = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="r", user=approver2
    )
    with pytest.raises(workflow.NotAllowed):
        workflow.approve(request.id, approver2)
    request.refresh_from_db()
    assert request.state == State.PROPOSED
    assert not AuditEvent.objects.filter(action=A.REQUEST_APPROVED).exists()


def test_approval_dispatches_after_commit_onto_the_hosts_queue(
    proposed, approver, queue, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        workflow.approve(proposed.id, approver, "fine")
    # Nothing is sent before the approval commits.
    assert queue.drain() == []
    proposed.refresh_from_db()
    assert proposed.state == State.APPROVED

    for callback in callbacks:
        callback()

    task, order = queue.get(timeout=5)
    assert task == "ocrdash.agent.prune"
    assert order["request_id"] == proposed.id.hex and order["host"] == HOST
    assert sorted(i["path"] for i in order["items"]) == ["en_ocr_v1.gguf", "old_fr_ocr_v1.bin"]
    assert all(len(i["sha256"]) == 64 for i in order["items"])
    proposed.refresh_from_db()
    assert proposed.state == State.DISPATCHED and proposed.dispatch_attempts == 1
    assert AuditEvent.objects.filter(action=A.REQUEST_DISPATCHED, object_id=str(proposed.id)).exists()


def test_a_rolled_back_approval_sends_nothing(proposed, approver, queue, django_capture_on_commit_callbacks):
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        workflow.approve(proposed.id, approver)
        raise RuntimeError("the surrounding work failed")
    assert callbacks == []
    assert queue.drain() == []
    proposed.refresh_from_db()
    assert proposed.state == State.PROPOSED


def test_a_double_dispatch_claims_once(proposed, approver, queue, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=False):
        workflow.approve(proposed.id, approver)

    assert workflow.dispatch_request(proposed.id) is True
    assert workflow.dispatch_request(proposed.id) is False

    assert len(queue.drain()) == 1
    proposed.refresh_from_db()
    assert proposed.dispatch_attempts == 1


def test_a_pending_host_cannot_be_approved_for(make_host, operator, approver, queue):
    host = make_host(HOST, status=Host.Status.PENDING)
    request = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="r", user=operator
    )
    with pytest.raises(workflow.NotAllowed, match="accept it first"):
        workflow.approve(request.id, approver)
    assert queue.drain() == []


def test_stale_proposals_expire_and_cannot_be_approved(proposed, approver):
    PruneRequest.objects.filter(id=proposed.id).update(expires_at=timezone.now() - timedelta(seconds=1))

    assert workflow.expire_stale() == 1
    assert workflow.expire_stale() == 0

    proposed.refresh_from_db()
    assert proposed.state == State.EXPIRED
    assert AuditEvent.objects.filter(action=A.REQUEST_EXPIRED, object_id=str(proposed.id)).count() == 1
    with pytest.raises(workflow.WrongState):
        workflow.approve(proposed.id, approver)


def test_an_unanswered_order_is_resent_then_given_up(proposed, queue, settings):
    settings.OCRDASH = {**settings.OCRDASH, "RESEND_AFTER_MINUTES": 15, "MAX_DISPATCH_ATTEMPTS": 2}
    dispatched(proposed, minutes_ago=5, attempts=1)
    assert workflow.resend_unanswered() == (0, 0)  # not overdue yet

    dispatched(proposed, minutes_ago=20, attempts=1)
    assert workflow.resend_unanswered() == (1, 0)
    [(_task, order)] = queue.drain()
    assert order["request_id"] == proposed.id.hex
    proposed.refresh_from_db()
    assert proposed.dispatch_attempts == 2 and proposed.state == State.DISPATCHED

    dispatched(proposed, minutes_ago=20, attempts=2)
    assert workflow.resend_unanswered() == (0, 1)
    assert queue.drain() == []
    proposed.refresh_from_db()
    assert proposed.state == State.FAILED
    assert set(proposed.items.values_list("outcome", flat=True)) == {PruneItem.Outcome.ERROR}


def test_an_unanswered_order_is_not_resent_to_a_host_that_no_longer_takes_orders(proposed, queue, settings):
    settings.OCRDASH = {**settings.OCRDASH, "RESEND_AFTER_MINUTES": 15, "MAX_DISPATCH_ATTEMPTS": 3}
    dispatched(proposed, minutes_ago=20, attempts=1)
    Host.objects.filter(pk=proposed.host_id).update(status=Host.Status.PENDING)  # e.g. key revoked

    assert workflow.resend_unanswered() == (0, 1)

    assert queue.drain() == []
    proposed.refresh_from_db()
    assert proposed.state == State.FAILED
    assert all("not re-sent" in detail for detail in proposed.items.values_list("detail", flat=True))


def test_a_broker_that_is_down_is_audited_and_the_request_stays_dispatched(
    proposed, approver, dead_broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        workflow.approve(proposed.id, approver)

    proposed.refresh_from_db()
    assert proposed.state == State.DISPATCHED  # resend_unanswered tries again later
    failure = AuditEvent.objects.get(action=A.DISPATCH_FAILED, object_id=str(proposed.id))
    assert "broker" in failure.details["error"]
    assert not AuditEvent.objects.filter(action=A.REQUEST_DISPATCHED).exists()


def test_host_actions_report_a_broker_that_is_down(make_host, operator, dead_broker):
    host = make_host(HOST)
    with pytest.raises(workflow.WorkflowError, match="broker"):
        workflow.ask_inventory(host, operator)
    assert not AuditEvent.objects.filter(action=A.INVENTORY_ASKED).exists()


def _outcome_queries(make_host, dispatched_request, name: str, files: int) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from workers.schema import ItemOutcome, Outcome

    host = make_host(name, {f"old_{i}.bin": 10 for i in range(files)})
    request = dispatched_request(host)
    outcomes = [
        ItemOutcome(path=f"old_{i}.bin", outcome=Outcome.QUARANTINED, bytes_reclaimed=10)
        for i in range(files)
    ]
    with CaptureQueriesContext(connection) as queries:
        workflow.record_outcomes(request.id, outcomes)
    assert AuditEvent.objects.filter(action=A.ITEM_OUTCOME, object_id=str(request.id)).count() == files
    return len(queries)


def test_recording_outcomes_takes_the_same_queries_for_3_or_60_files(make_host, dispatched_request):
    assert _outcome_queries(make_host, dispatched_request, "wf-q-small", 3) == _outcome_queries(
        make_host, dispatched_request, "wf-q-large", 60
    )
