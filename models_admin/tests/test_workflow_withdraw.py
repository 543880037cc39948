"""An operator can withdraw their own request while nobody decided: audited, under the row lock."""

from __future__ import annotations

import threading

import pytest
from django.db import connection
from django.urls import reverse

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, PruneRequest

State = PruneRequest.State


def _propose(host, user):
    return workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="stale", user=user
    )


def test_the_proposer_withdraws_from_the_page_and_it_is_audited(client_for, make_host, operator):
    request = _propose(make_host("ocr-1"), operator)
    client = client_for(operator)
    page = client.get(reverse("ocrdash-request", args=[request.id])).content.decode()
    assert "Withdraw my request" in page
    response = client.post(reverse("ocrdash-request-withdraw", args=[request.id]), {"comment": "wrong host"})
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.WITHDRAWN and request.finished_at is not None
    event = AuditEvent.objects.get(action=AuditEvent.Action.REQUEST_WITHDRAWN)
    assert (event.actor, event.details["comment"]) == ("otto", "wrong host")


def test_nobody_else_may_withdraw_and_a_decided_request_cannot_be(
    client_for, make_host, operator, approver, approver2, host_queue
):
    request = _propose(make_host("ocr-1"), operator)
    with pytest.raises(workflow.NotAllowed):
        workflow.withdraw(request.id, approver)
    response = client_for(approver2).post(reverse("ocrdash-request-withdraw", args=[request.id]))
    assert response.status_code == 302
    request.refresh_from_db()
    assert request.state == State.PROPOSED
    host_queue("ocr-1")
    workflow.approve(request.id, approver)
    with pytest.raises(workflow.WrongState):
        workflow.withdraw(request.id, operator)
    assert client_for(operator).get(reverse("ocrdash-request-withdraw", args=[request.id])).status_code == 405


def _race(barrier: threading.Barrier, outcomes: dict, name: str, fn) -> None:
    try:
        barrier.wait()
        fn()
        outcomes[name] = "done"
    except workflow.WorkflowError:
        outcomes[name] = "refused"
    finally:
        connection.close()


@pytest.fixture
def role_groups(transactional_db) -> None:
    """The role groups migration 0002 makes: an earlier transactional test's flush removed them."""
    from django.contrib.auth.models import Group

    from models_admin.security.roles import Role

    for role in Role:
        Group.objects.get_or_create(name=role.value)


@pytest.mark.django_db(transaction=True)
def test_a_withdrawal_racing_an_approval_ends_one_way_only(
    role_groups, make_host, operator, approver, host_queue
):
    """Two connections at once: the proposer withdraws while an approver approves.

    Without the row lock both could read "proposed": the request would end withdrawn and yet
    be dispatched to the host.
    """
    for n in range(5):
        host = make_host(f"ocr-{n}")  # a dispatched request keeps its files: a fresh host each round
        queue = host_queue(host.name)
        request = _propose(host, operator)
        barrier = threading.Barrier(2)
        outcomes: dict[str, str] = {}
        threads = [
            threading.Thread(
                target=_race,
                args=(barrier, outcomes, "withdraw", lambda rid=request.id: workflow.withdraw(rid, operator)),
            ),
            threading.Thread(
                target=_race,
                args=(barrier, outcomes, "approve", lambda rid=request.id: workflow.approve(rid, approver)),
            ),
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes.values()) == ["done", "refused"], outcomes
        request.refresh_from_db()
        sent = queue.drain()
        if outcomes["withdraw"] == "done":
            assert request.state == State.WITHDRAWN and sent == []
        else:
            assert request.state == State.DISPATCHED and len(sent) == 1
