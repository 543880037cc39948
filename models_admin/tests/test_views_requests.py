"""The requests list, the request page, and deciding on it (two-person rule)."""

from __future__ import annotations

from django.urls import reverse

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, PruneItem, PruneRequest, request_rank

State = PruneRequest.State


def _propose(host, user, *names):
    files = host.current_snapshot.files.all()
    if names:
        files = files.filter(name__in=names)
    return workflow.propose(host=host, files=list(files), reason="superseded", user=user)


def test_it_lists_pending_first_then_open_then_finished(client_for, viewer, operator, make_host):
    host = make_host("ocr-1", {"a": 1, "b": 2, "c": 3})
    done = _propose(host, operator, "a")
    PruneRequest.objects.filter(id=done.id).update(state=State.COMPLETED)
    sent = _propose(host, operator, "b")
    PruneRequest.objects.filter(id=sent.id).update(state=State.DISPATCHED)
    waiting = _propose(host, operator, "c")
    page = client_for(viewer).get(reverse("ocrdash-requests")).context["page"]
    assert [r.id for r in page.object_list] == [waiting.id, sent.id, done.id]
    assert page.object_list[0].item_count == 1 and page.object_list[0].item_bytes == 3


def test_it_filters_requests_by_state_and_host(client_for, viewer, operator, make_host):
    one, two = make_host("ocr-1"), make_host("ocr-2")
    first = _propose(one, operator)
    _propose(two, operator)
    client = client_for(viewer)
    assert [r.id for r in client.get(reverse("ocrdash-requests"), {"host": "ocr-1"}).context["page"]] == [
        first.id
    ]
    assert not list(client.get(reverse("ocrdash-requests"), {"state": "completed"}).context["page"])


def test_it_shows_last_copies_and_the_total(client_for, approver, operator, make_host):
    host = make_host("ocr-1", {"shared.bin": 100, "only.bin": 200})
    make_host("ocr-2", {"shared.bin": 100})
    prune = _propose(host, operator)
    response = client_for(approver).get(reverse("ocrdash-request", args=[prune.id]))
    last = {row.item.path: row.last_copy for row in response.context["rows"]}
    assert last == {"shared.bin": False, "only.bin": True}
    assert response.context["total_bytes"] == 300
    assert "1 last copy:" in response.content.decode()


def test_it_warns_about_a_file_aspose_loads(client_for, approver, operator, make_host):
    host = make_host("ocr-1", {"Llama-3.2-3B-Instruct-Q4_K_M.gguf": 10})
    prune = _propose(host, operator)
    body = client_for(approver).get(reverse("ocrdash-request", args=[prune.id])).content.decode()
    assert "Deleting breaks AI post-processing" in body


def test_it_approves_and_audits(client_for, approver, operator, make_host):
    prune = _propose(make_host("ocr-1"), operator)
    response = client_for(approver).post(
        reverse("ocrdash-request-approve", args=[prune.id]), {"comment": "ok"}
    )
    assert response["Location"] == reverse("ocrdash-request", args=[prune.id])
    prune.refresh_from_db()
    assert (prune.state, prune.decided_by, prune.decision_comment) == (State.APPROVED, approver, "ok")
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REQUEST_APPROVED, actor="alice").exists()


def test_it_refuses_self_approval(client_for, approver2, make_host):
    prune = _propose(make_host("ocr-1"), approver2)
    client = client_for(approver2)
    page = client.get(reverse("ocrdash-request", args=[prune.id])).content.decode()
    assert "disabled" in page and "another approver must approve it" in page
    response = client.post(reverse("ocrdash-request-approve", args=[prune.id]), follow=True)
    assert "You proposed this request: another approver must decide" in response.content.decode()
    prune.refresh_from_db()
    assert prune.state == State.PROPOSED
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.REQUEST_APPROVED).exists()


def test_it_rejects_with_a_comment_and_audits(client_for, approver, operator, make_host):
    prune = _propose(make_host("ocr-1"), operator)
    client_for(approver).post(reverse("ocrdash-request-reject", args=[prune.id]), {"comment": "still used"})
    prune.refresh_from_db()
    assert (prune.state, prune.decision_comment) == (State.REJECTED, "still used")
    event = AuditEvent.objects.get(action=AuditEvent.Action.REQUEST_REJECTED)
    assert (event.actor, event.details["comment"]) == ("alice", "still used")


def test_it_says_when_a_request_was_already_decided(client_for, approver, operator, make_host):
    prune = _propose(make_host("ocr-1"), operator)
    client = client_for(approver)
    client.post(reverse("ocrdash-request-reject", args=[prune.id]))
    response = client.post(reverse("ocrdash-request-approve", args=[prune.id]), follow=True)
    assert "Request is rejected, not proposed" in response.content.decode()


def test_it_refuses_approval_to_an_operator(client_for, operator, approver2, make_host):
    prune = _propose(make_host("ocr-1"), approver2)
    response = client_for(operator).post(reverse("ocrdash-request-approve", args=[prune.id]))
    assert response.status_code == 403
    prune.refresh_from_db()
    assert prune.state == State.PROPOSED


def _finished_quarantine(host, user) -> PruneRequest:
    prune = _propose(host, user)
    PruneRequest.objects.filter(id=prune.id).update(state=State.COMPLETED, bytes_reclaimed=3_000)
    prune.items.update(outcome=PruneItem.Outcome.QUARANTINED, detail="moved", bytes_reclaimed=1_500)
    return prune


def test_it_shows_outcomes_after_dispatch(client_for, viewer, operator, make_host):
    prune = _finished_quarantine(make_host("ocr-1"), operator)
    body = client_for(viewer).get(reverse("ocrdash-request", args=[prune.id])).content.decode()
    assert body.count(">Quarantined</span>") == 2
    assert "Restore from quarantine" not in body  # a viewer may not restore


def test_it_proposes_a_restore_of_a_quarantine(client_for, approver, operator, make_host):
    prune = _finished_quarantine(make_host("ocr-1"), operator)
    response = client_for(approver).post(
        reverse("ocrdash-request-restore", args=[prune.id]), {"reason": "needed"}
    )
    restore = PruneRequest.objects.get(kind=PruneRequest.Kind.RESTORE)
    assert response["Location"] == reverse("ocrdash-request", args=[restore.id])
    assert (restore.restore_of_id, restore.state, restore.items.count()) == (prune.id, State.PROPOSED, 2)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REQUEST_PROPOSED, actor="alice").exists()


def test_it_refuses_to_restore_what_was_not_quarantined(client_for, approver, operator, make_host):
    prune = _propose(make_host("ocr-1"), operator)
    response = client_for(approver).post(reverse("ocrdash-request-restore", args=[prune.id]), follow=True)
    assert "Nothing of this request is in quarantine" in response.content.decode()
    assert not PruneRequest.objects.filter(kind=PruneRequest.Kind.RESTORE).exists()


def test_it_answers_404_for_an_unknown_request(client_for, viewer):
    url = reverse("ocrdash-request", args=["00000000-0000-0000-0000-000000000000"])
    assert client_for(viewer).get(url).status_code == 404


def test_every_state_sorts_where_the_requests_page_says(operator, make_host):
    # request_rank spells the states out (its index is built before State exists): a renamed
    # state would silently sort with the history.
    host = make_host("ocr-1", {"a": 1})
    request = _propose(host, operator)
    expected = {State.PROPOSED: 0, State.APPROVED: 1, State.DISPATCHED: 1}
    for state in State:
        PruneRequest.objects.filter(id=request.id).update(state=state)
        rank = PruneRequest.objects.annotate(rank=request_rank()).get(id=request.id).rank
        assert rank == expected.get(state, 2), state
