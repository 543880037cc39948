"""API on labels, groups and campaigns: the same rules as the pages, JSON errors of one shape."""

from __future__ import annotations

import pytest

from models_admin.models import AuditEvent, Campaign
from models_admin.tests.conftest import sha

pytestmark = pytest.mark.django_db
OLD = "old_fr_ocr_v1.bin"


def send(client, method: str, url: str, body=None):
    return getattr(client, method)(url, body or {}, content_type="application/json")


@pytest.fixture
def hosts(make_host):
    return [make_host(f"ocr-{i}") for i in range(1, 4)]


def test_labels_groups_and_host_filters(hosts, client_for, approver, viewer, operator) -> None:
    api = client_for(approver)
    assert send(api, "put", "/api/hosts/ocr-1/labels/", {"labels": "env=prod,region=eu"}).json()[
        "labels"
    ] == {
        "env": "prod",
        "region": "eu",
    }
    send(api, "put", "/api/hosts/ocr-2/labels/", {"labels": {"env": "prod"}})
    bad = send(api, "put", "/api/hosts/ocr-2/labels/", {"labels": "env"})
    assert bad.status_code == 400 and "key=value" in bad.json()["error"]
    assert send(client_for(operator), "put", "/api/hosts/ocr-3/labels/", {"labels": "a=b"}).status_code == 403
    names = lambda r: [h["name"] for h in r.json()["results"]]  # noqa: E731
    assert names(client_for(viewer).get("/api/hosts/", {"label": "env=prod"})) == ["ocr-1", "ocr-2"]
    created = send(api, "post", "/api/groups/", {"name": "eu", "selector": "region=eu"})
    assert created.status_code == 201 and created.json()["members"] == ["ocr-1"]
    send(api, "post", "/api/groups/", {"name": "pair", "hosts": ["ocr-2", "ocr-3"]})
    assert names(client_for(viewer).get("/api/hosts/", {"group": "pair"})) == ["ocr-2", "ocr-3"]
    assert client_for(viewer).get("/api/hosts/", {"group": "nope"}).status_code == 400
    assert api.delete("/api/groups/pair/").status_code == 204
    host = client_for(viewer).get("/api/hosts/ocr-1/").json()
    assert host["labels"] == {"env": "prod", "region": "eu"} and host["reported_labels"] == {}


def test_preview_propose_approve_and_steer_a_campaign(
    hosts, client_for, operator, approver, host_queue, django_capture_on_commit_callbacks
) -> None:
    for i in range(1, 4):
        host_queue(f"ocr-{i}")
    spec = {"target_kind": "model", "rule_kind": "identity", "model_name": OLD, "model_sha256": sha(OLD)}
    ops = client_for(operator)
    preview = send(ops, "post", "/api/campaigns/preview/", spec).json()
    assert [h["host"] for h in preview["hosts"]] == ["ocr-1", "ocr-2", "ocr-3"]
    assert preview["last_copies_kept"] == 1 and preview["waves"] == 2 and preview["bytes"] == 2_000
    assert send(ops, "post", "/api/campaigns/", {**spec, "reason": " "}).status_code == 400
    created = send(ops, "post", "/api/campaigns/", {**spec, "reason": "old French model"})
    assert created.status_code == 201
    campaign_id = created.json()["id"]
    assert created.json()["state"] == "proposed" and len(created.json()["hosts"]) == 3
    assert send(ops, "post", f"/api/campaigns/{campaign_id}/approve/").status_code == 403  # not an approver

    api = client_for(approver)
    with django_capture_on_commit_callbacks(execute=True):
        approved = send(api, "post", f"/api/campaigns/{campaign_id}/approve/", {"comment": "go"})
    body = approved.json()
    assert approved.status_code == 200 and body["state"] == "running" and body["decided_by"] == "alice"
    # The canary's request: approved with the campaign, sent once the approval committed.
    assert body["hosts"][0]["request_state"] in ("approved", "dispatched")
    assert [h["request_state"] for h in body["hosts"][1:]] == [None, None]
    again = send(api, "post", f"/api/campaigns/{campaign_id}/approve/")
    assert again.status_code == 409
    assert send(api, "post", f"/api/campaigns/{campaign_id}/pause/").json()["state"] == "paused"
    halted = send(api, "post", f"/api/campaigns/{campaign_id}/halt/", {"comment": "stop"}).json()
    assert halted["state"] == "halted" and halted["halt_reason"] == "halted by alice: stop"
    assert send(api, "post", f"/api/campaigns/{campaign_id}/explode/").status_code == 400
    listed = client_for(operator).get("/api/campaigns/", {"state": "halted"}).json()["results"]
    assert [c["id"] for c in listed] == [campaign_id]
    events = AuditEvent.objects.filter(object_type="campaign", object_id=campaign_id)
    assert events.filter(action=AuditEvent.Action.CAMPAIGN_HALTED).exists()
    assert Campaign.objects.get(id=campaign_id).requests.count() == 1


def test_a_group_target_that_does_not_exist_is_a_400(hosts, client_for, operator) -> None:
    response = send(
        client_for(operator),
        "post",
        "/api/campaigns/preview/",
        {"target_kind": "group", "group": "nope", "rule_kind": "policy", "policy": "prefix"},
    )
    assert response.status_code == 400 and "no such group" in response.json()["error"]
