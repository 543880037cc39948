"""API on prune requests: list and filters, detail with outcomes, decisions, restore."""

from __future__ import annotations

import pytest

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, PruneItem, PruneRequest

pytestmark = pytest.mark.django_db


def post(client, url, body=None):
    return client.post(url, body or {}, content_type="application/json")


@pytest.fixture
def proposed(make_host, operator):
    host = make_host("api-req-1")
    return workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="r", user=operator
    )


def test_self_approval_is_refused_with_403(make_host, client_for, approver2):
    make_host("api-req-3")
    api = client_for(approver2)  # an operator and an approver: may propose and approve, not both
    created = post(api, "/api/hosts/api-req-3/prune-requests/", {"files": ["en_ocr_v1.gguf"], "reason": "r"})
    request_id = created.json()["id"]

    response = post(api, f"/api/prune-requests/{request_id}/approve/")

    assert response.status_code == 403
    assert "another approver" in response.json()["error"]
    assert PruneRequest.objects.get(id=request_id).state == PruneRequest.State.PROPOSED


def test_approval_dispatches_and_a_second_decision_is_409(
    proposed, client_for, approver, host_queue, django_capture_on_commit_callbacks
):
    queue = host_queue("api-req-1")
    api = client_for(approver)

    with django_capture_on_commit_callbacks(execute=True):
        response = post(api, f"/api/prune-requests/{proposed.id}/approve/", {"comment": "fine"})

    assert response.status_code == 200
    assert response.json()["decision_comment"] == "fine"
    [(task, order)] = queue.drain()
    assert task == "ocrdash.agent.prune" and order["request_id"] == proposed.id.hex
    again = post(api, f"/api/prune-requests/{proposed.id}/reject/")
    assert again.status_code == 409 and "not proposed" in again.json()["error"]


def test_reject(proposed, client_for, approver):
    response = post(client_for(approver), f"/api/prune-requests/{proposed.id}/reject/", {"comment": "keep"})
    assert response.status_code == 200 and response.json()["state"] == "rejected"


def test_list_filters_by_state_and_host(proposed, make_host, operator, client_for, viewer):
    other = make_host("api-req-2")
    workflow.propose(host=other, files=list(other.current_snapshot.files.all()), reason="r", user=operator)
    workflow.reject(proposed.id, operator)
    api = client_for(viewer)

    everything = api.get("/api/prune-requests/").json()
    assert everything["count"] == 2 and all(r["item_count"] == 2 for r in everything["results"])
    open_ones = api.get("/api/prune-requests/", {"state": "proposed"}).json()["results"]
    assert [r["host"] for r in open_ones] == ["api-req-2"]
    assert api.get("/api/prune-requests/", {"host": "api-req-1"}).json()["results"][0]["state"] == "rejected"


def test_detail_shows_items_and_outcomes(proposed, client_for, viewer):
    proposed.items.filter(path="old_fr_ocr_v1.bin").update(
        outcome=PruneItem.Outcome.QUARANTINED, bytes_reclaimed=9
    )

    body = client_for(viewer).get(f"/api/prune-requests/{proposed.id}/").json()

    outcomes = {i["path"]: (i["outcome"], i["bytes_reclaimed"]) for i in body["items"]}
    assert outcomes == {"en_ocr_v1.gguf": ("pending", 0), "old_fr_ocr_v1.bin": ("quarantined", 9)}
    assert client_for(viewer).get("/api/prune-requests/not-a-uuid/").status_code == 404


def test_restore_opens_a_restore_request(proposed, client_for, approver):
    PruneRequest.objects.filter(id=proposed.id).update(state=PruneRequest.State.COMPLETED)
    proposed.items.update(outcome=PruneItem.Outcome.QUARANTINED)
    api = client_for(approver)

    response = post(api, f"/api/prune-requests/{proposed.id}/restore/", {"reason": "wanted back"})

    assert response.status_code == 201
    body = response.json()
    assert body["kind"] == "restore" and body["restore_of"] == str(proposed.id) and body["item_count"] == 2
    twice = post(api, f"/api/prune-requests/{proposed.id}/restore/")
    assert twice.status_code == 400 and "already open" in twice.json()["error"]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REQUEST_PROPOSED, object_id=body["id"]).exists()


def test_the_list_takes_as_many_queries_for_3_requests_as_for_12(
    make_host, operator, approver, client_for, viewer
):
    """Each row names its host and its people: loaded with the page (only their names), never
    one query per row."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    api = client_for(viewer)
    counts, made = [], 0
    for wanted in (3, 12):
        for i in range(made, wanted):
            host = make_host(f"api-list-{i:02}")
            request = workflow.propose(
                host=host, files=list(host.current_snapshot.files.all()), reason="r", user=operator
            )
            if i % 2:
                workflow.reject(request.id, approver)
        made = wanted
        with CaptureQueriesContext(connection) as queries:
            rows = api.get("/api/prune-requests/").json()["results"]
        counts.append(len(queries))
        assert len(rows) == wanted and {r["requested_by"] for r in rows} == {operator.username}
        assert {r["decided_by"] for r in rows} == {None, approver.username}
        assert sorted(r["host"] for r in rows) == [f"api-list-{i:02}" for i in range(wanted)]
    assert counts[0] == counts[1]
