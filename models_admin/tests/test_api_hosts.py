"""API on hosts: list, filters, detail, inventory, actions, proposing by path and by policy."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.test import Client

from models_admin.models import Host, PruneRequest

pytestmark = pytest.mark.django_db


def test_it_lists_hosts_filtered_by_status_and_name(make_host, client_for, viewer):
    make_host("ocr-paris-1")
    make_host("ocr-lyon-1")
    make_host("ocr-paris-2", status=Host.Status.PENDING)
    api = client_for(viewer)

    names = [h["name"] for h in api.get("/api/hosts/").json()["results"]]
    assert names == ["ocr-lyon-1", "ocr-paris-1", "ocr-paris-2"]
    paris = api.get("/api/hosts/", {"name": "PARIS", "status": "active"}).json()
    assert [h["name"] for h in paris["results"]] == ["ocr-paris-1"]
    assert api.get("/api/hosts/", {"status": "sleeping"}).status_code == 400


def test_host_detail_and_inventory(make_host, client_for, viewer):
    make_host("ocr-1", {"en.gguf": 20, "Llama-3.2-3B-Instruct-Q4_K_M.gguf": 30})
    api = client_for(viewer)

    host = api.get("/api/hosts/ocr-1/").json()
    assert host["file_count"] == 2 and host["current_snapshot"]["total_bytes"] == 50
    assert host["is_missing"] is False and host["presence"] == "online"
    files = api.get("/api/hosts/ocr-1/inventory/").json()["results"]
    assert [(f["path"], f["known_to_aspose"]) for f in files] == [
        ("Llama-3.2-3B-Instruct-Q4_K_M.gguf", True),
        ("en.gguf", False),
    ]


def test_an_unknown_host_is_a_json_404(client_for, viewer):
    response = client_for(viewer).get("/api/hosts/nowhere/")
    assert response.status_code == 404
    assert response.json() == {"error": "No Host matches the given query.", "detail": None}


def test_ask_inventory_puts_an_order_on_the_hosts_queue(make_host, client_for, operator, host_queue):
    make_host("api-host-1")
    queue = host_queue("api-host-1")

    response = client_for(operator).post("/api/hosts/api-host-1/actions/inventory/")

    assert response.status_code == 202
    [(task, order)] = queue.drain()
    assert task == "ocrdash.agent.inventory" and order["host"] == "api-host-1"


def test_no_order_goes_to_a_pending_host(make_host, client_for, operator, host_queue):
    make_host("api-host-2", status=Host.Status.PENDING)
    queue = host_queue("api-host-2")

    response = client_for(operator).post("/api/hosts/api-host-2/actions/free/")

    assert response.status_code == 403
    assert "pending" in response.json()["error"]
    assert queue.drain() == []


def test_propose_by_path(make_host, client_for, operator):
    make_host("ocr-1")
    response = client_for(operator).post(
        "/api/hosts/ocr-1/prune-requests/",
        {"files": ["old_fr_ocr_v1.bin"], "reason": "stale", "mode": "quarantine"},
        content_type="application/json",
    )

    assert response.status_code == 201
    body = response.json()
    assert body["state"] == "proposed" and body["requested_by"] == operator.username
    assert [i["path"] for i in body["items"]] == ["old_fr_ocr_v1.bin"]
    assert PruneRequest.objects.get(id=body["id"]).reason == "stale"


def test_propose_names_unknown_paths(make_host, client_for, operator):
    make_host("ocr-1")
    response = client_for(operator).post(
        "/api/hosts/ocr-1/prune-requests/",
        {"files": ["old_fr_ocr_v1.bin", "ghost.bin", "../etc/passwd"], "reason": "x"},
        content_type="application/json",
    )

    assert response.status_code == 400
    assert "../etc/passwd, ghost.bin" in response.json()["error"]
    assert not PruneRequest.objects.exists()


def test_propose_validates_the_body(make_host, client_for, operator):
    make_host("ocr-1")
    response = client_for(operator).post(
        "/api/hosts/ocr-1/prune-requests/", {"files": []}, content_type="application/json"
    )
    assert response.status_code == 400
    body = response.json()
    assert body["error"].startswith("files:") and set(body["detail"]) == {"files", "reason"}


def test_proposing_a_file_twice_is_a_400(make_host, client_for, operator):
    make_host("ocr-1")
    body = {"files": ["old_fr_ocr_v1.bin"], "reason": "x"}
    api = client_for(operator)
    assert (
        api.post("/api/hosts/ocr-1/prune-requests/", body, content_type="application/json").status_code == 201
    )
    again = api.post("/api/hosts/ocr-1/prune-requests/", body, content_type="application/json")
    assert again.status_code == 400 and "already in an open request" in again.json()["error"]


def test_run_policy_and_nothing_left(make_host, client_for, operator):
    make_host("ocr-1", {"old_a.bin": 1, "b.bin": 2})
    api = client_for(operator)

    first = api.post("/api/hosts/ocr-1/policies/prefix/", {}, content_type="application/json")
    assert first.status_code == 201
    assert first.json()["request"]["policy"] == "prefix" and first.json()["selected"] == ["old_a.bin"]

    second = api.post("/api/hosts/ocr-1/policies/prefix/", {}, content_type="application/json")
    assert second.status_code == 200
    assert second.json()["request"] is None and second.json()["skipped_busy"] == ["old_a.bin"]


def test_run_policy_with_params_and_unknown_policy(make_host, client_for, operator):
    make_host("ocr-1", {"b.bin": 2})
    api = client_for(operator)
    ok = api.post(
        "/api/hosts/ocr-1/policies/prefix/", {"params": {"prefix": "b"}}, content_type="application/json"
    )
    assert ok.status_code == 201
    bad = api.post("/api/hosts/ocr-1/policies/everything/", {}, content_type="application/json")
    assert bad.status_code == 400 and "no policy named" in bad.json()["error"]


def test_policies_are_listed(client_for, viewer):
    names = [p["name"] for p in client_for(viewer).get("/api/policies/").json()]
    assert "prefix" in names and "keep_latest" in names


def test_a_token_from_create_user_works_without_a_session(make_host, capsys):
    make_host("ocr-1")
    call_command("create_user", "script", "--role", "viewer", "--token")
    token = capsys.readouterr().out.strip()

    response = Client().get("/api/hosts/", HTTP_AUTHORIZATION=f"Token {token}")

    assert response.status_code == 200 and response.json()["count"] == 1
    assert Client().get("/api/hosts/", HTTP_AUTHORIZATION="Token wrong").status_code == 401
