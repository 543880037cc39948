"""Every API write, for every role: success with its audit row, GET refused, anonymous 401,
wrong roles 403 and nothing written."""

from __future__ import annotations

import pytest
from django.test import Client

from models_admin.approvals import workflow
from models_admin.models import AuditEvent, Host, PruneItem, PruneRequest

pytestmark = pytest.mark.django_db
A = AuditEvent.Action
HOST = "api-perm-1"

OPERATOR_ONLY = ("viewer", "approver", "outsider")
APPROVER_ONLY = ("viewer", "operator", "outsider")
# An approver may ask for a fresh inventory too (to decide on current facts).
WRONG_ROLES = {
    "operator": OPERATOR_ONLY,
    "approver": APPROVER_ONLY,
    "operator or approver": ("viewer", "outsider"),
}

# (url, body, role that may, expected status, audit action written)
CASES = [
    (f"/api/hosts/{HOST}/actions/inventory/", {}, "operator or approver", 202, A.INVENTORY_ASKED),
    (f"/api/hosts/{HOST}/actions/free/", {}, "operator", 202, A.FREE_ASKED),
    (
        f"/api/hosts/{HOST}/prune-requests/",
        {"files": ["old_fr_ocr_v1.bin"], "reason": "stale"},
        "operator",
        201,
        A.REQUEST_PROPOSED,
    ),
    (f"/api/hosts/{HOST}/policies/prefix/", {"reason": "tutorial"}, "operator", 201, A.REQUEST_PROPOSED),
    ("/api/prune-requests/{open}/approve/", {"comment": "ok"}, "approver", 200, A.REQUEST_APPROVED),
    ("/api/prune-requests/{open}/reject/", {"comment": "no"}, "approver", 200, A.REQUEST_REJECTED),
    ("/api/prune-requests/{done}/restore/", {"reason": "needed"}, "approver", 201, A.REQUEST_PROPOSED),
    ("/api/hosts/api-pending-1/accept/", {}, "approver", 200, A.HOST_ACCEPTED),
    (f"/api/hosts/{HOST}/retire/", {}, "approver", 200, A.HOST_RETIRED),
]
IDS = [c[0].strip("/").replace("/api/", "").split("/", 2)[-1] for c in CASES]


@pytest.fixture
def world(make_host, operator, host_queue):
    """An active host, a pending host, an open request (by the operator) and a finished
    quarantine request, and the host's real broker queue (emptied afterwards)."""
    host = make_host(HOST)
    make_host("api-pending-1", status=Host.Status.PENDING)
    files = host.current_snapshot.files
    open_request = workflow.propose(
        host=host, files=[files.get(path="en_ocr_v1.gguf")], reason="open", user=operator
    )
    done = workflow.propose(
        host=host, files=[files.get(path="old_fr_ocr_v1.bin")], reason="done", user=operator
    )
    PruneRequest.objects.filter(id=done.id).update(state=PruneRequest.State.COMPLETED)
    done.items.update(outcome=PruneItem.Outcome.QUARANTINED, open_on_host=None)
    # "done" holds old_fr_ocr_v1.bin in no open request any more, so proposing it is allowed.
    queue = host_queue(HOST)
    return {"open": open_request.id, "done": done.id, "queue": queue}


def _url(template: str, world: dict) -> str:
    return template.format(open=world["open"], done=world["done"])


@pytest.mark.parametrize(("url", "body", "role", "code", "action"), CASES, ids=IDS)
def test_the_allowed_role_succeeds_and_is_audited(
    request, world, client_for, django_capture_on_commit_callbacks, url, body, role, code, action
):
    # approver2 is an operator *and* an approver; it never proposed the open request, so it
    # may approve it, and it stands for "the role" in every case.
    user = request.getfixturevalue("approver2" if role == "approver" else "operator")
    mine = AuditEvent.objects.filter(action=action, actor=user.username)
    before = mine.count()

    with django_capture_on_commit_callbacks(execute=True):
        response = client_for(user).post(_url(url, world), body, content_type="application/json")

    assert response.status_code == code, response.content
    assert mine.count() == before + 1


@pytest.mark.parametrize(("url", "body", "role", "code", "action"), CASES, ids=IDS)
def test_anonymous_gets_401_json(world, url, body, role, code, action):
    before = AuditEvent.objects.count()
    response = Client().post(_url(url, world), body, content_type="application/json")
    assert response.status_code == 401
    assert response.json()["error"]
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize(("url", "body", "role", "code", "action"), CASES, ids=IDS)
def test_wrong_roles_get_403_and_change_nothing(request, world, client_for, url, body, role, code, action):
    before = AuditEvent.objects.count()
    for persona in WRONG_ROLES[role]:
        user = request.getfixturevalue(persona)
        response = client_for(user).post(_url(url, world), body, content_type="application/json")
        assert response.status_code == 403, (persona, response.content)
        assert response.json()["error"] == "your role does not allow this"
    assert AuditEvent.objects.count() == before
    assert world["queue"].drain() == []


@pytest.mark.parametrize(("url", "body", "role", "code", "action"), CASES, ids=IDS)
def test_get_is_refused_on_writes(world, client_for, approver2, url, body, role, code, action):
    response = client_for(approver2).get(_url(url, world))
    assert response.status_code == 405
    assert "not allowed" in response.json()["error"]


@pytest.mark.parametrize(
    "url",
    [
        "/api/hosts/",
        f"/api/hosts/{HOST}/",
        f"/api/hosts/{HOST}/inventory/",
        "/api/policies/",
        "/api/prune-requests/",
        "/api/prune-requests/{open}/",
        "/api/audit/",
        "/api/reports/rejected/",
    ],
)
def test_reads_need_a_role(world, client_for, viewer, outsider, url):
    url = _url(url, world)
    assert client_for(viewer).get(url).status_code == 200
    assert client_for(outsider).get(url).status_code == 403
    assert Client().get(url).status_code == 401
