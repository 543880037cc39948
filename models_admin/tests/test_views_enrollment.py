"""The Enrollment page, host key revocation, their API twins and management commands."""

from __future__ import annotations

import io
import json

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command
from django.urls import reverse

from models_admin.fleet import trust
from models_admin.ingest import ingest_report
from models_admin.models import AuditEvent, EnrollmentToken, Host
from workers.schema import HostFacts, InventoryReport, ModelDirState
from workers.signing.enrollment import ENROLLMENT_TOKEN_PREFIX, enrollment_proof
from workers.signing.keys import public_key_text

from .conftest import signed_report

Action = AuditEvent.Action
pytestmark = pytest.mark.django_db
PAGE = "/enrollment/"


def enroll_with(token: str, host: str = "fresh-1") -> str:
    """Ingest the first inventory of a new agent holding ``token``; returns the result status."""
    key = Ed25519PrivateKey.generate()
    facts = HostFacts(hostname="h", model_dir="/m", model_dir_state=ModelDirState.OK)
    report = InventoryReport(host=host, facts=facts, files=[]).to_json()
    public = public_key_text(key)
    proof = enrollment_proof(token, host=host, public_key_text=public, report_id=report["report_id"])
    report["enrollment"] = {"public_key": public, "proof": proof}
    return ingest_report(signed_report(report, key)).status


def everything_stored() -> str:
    """The text of every row a token could leak into."""
    rows = [
        list(AuditEvent.objects.values()),
        list(EnrollmentToken.objects.values()),
    ]
    from django.contrib.sessions.models import Session

    rows.append([s.get_decoded() for s in Session.objects.all()])
    return json.dumps(rows, default=str)


def test_it_shows_the_dashboard_key_to_an_approver(client_for, approver):
    body = client_for(approver).get(PAGE).content.decode()
    assert trust.dashboard_public_key() in body and trust.dashboard_fingerprint() in body


def test_it_refuses_the_page_to_a_viewer(client_for, viewer):
    assert client_for(viewer).get(PAGE).status_code == 403


def test_it_shows_a_new_token_once_and_stores_only_its_verifier(client_for, approver):
    client = client_for(approver)
    response = client.post(reverse("ocrdash-enrollment-create"), {"label": "rack 4", "host_name": "fresh-1"})

    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    body = response.content.decode()
    token = body.split("OCRDASH_ENROLLMENT_TOKEN=")[1].split("<")[0].strip()
    assert token.startswith(ENROLLMENT_TOKEN_PREFIX)
    assert f"OCRDASH_DASHBOARD_PUBLIC_KEY={trust.dashboard_public_key()}" in body
    assert token not in everything_stored()
    assert token not in client.get(PAGE).content.decode()
    row = EnrollmentToken.objects.get()
    assert row.created_by == approver.username and row.label == "rack 4"
    event = AuditEvent.objects.get(action=Action.TOKEN_CREATED)
    assert event.actor == approver.username and event.details["token"] == row.fingerprint
    # The token shown is the one the dashboard accepts, for that host only.
    assert enroll_with(token, "fresh-2") == "rejected"
    assert enroll_with(token, "fresh-1") == "accepted"
    listed = client.get(PAGE).content.decode()
    assert "used</span> by" in listed and reverse("ocrdash-host", args=["fresh-1"]) in listed


def test_it_refuses_a_bad_host_name_for_a_token(client_for, approver):
    response = client_for(approver).post(reverse("ocrdash-enrollment-create"), {"host_name": "bad name!"})
    assert response.status_code == 200 and not EnrollmentToken.objects.exists()


def test_it_revokes_an_open_token(client_for, approver, approver2):
    row, token = trust.create_token(approver.username)
    url = reverse("ocrdash-enrollment-revoke", args=[row.id])
    assert client_for(approver2).get(url).status_code == 405

    response = client_for(approver2).post(url)

    assert response.status_code == 302 and response["Location"] == PAGE
    row.refresh_from_db()
    assert row.state() == "revoked" and row.revoked_by == approver2.username
    assert AuditEvent.objects.get(action=Action.TOKEN_REVOKED).actor == approver2.username
    assert enroll_with(token) == "rejected"
    # A second revocation is refused with a message, not a crash.
    client_for(approver2).post(url)
    assert AuditEvent.objects.filter(action=Action.TOKEN_REVOKED).count() == 1


def test_it_refuses_token_revocation_to_an_operator(client_for, operator, approver):
    row, _ = trust.create_token(approver.username)
    assert client_for(operator).post(reverse("ocrdash-enrollment-revoke", args=[row.id])).status_code == 403
    assert EnrollmentToken.objects.get().state() == "open"


def test_it_revokes_a_host_key_from_the_host_page(client_for, approver, make_host):
    host = make_host("ocr-1")
    fingerprint = host.active_key.fingerprint
    client = client_for(approver)
    assert fingerprint in client.get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()

    response = client.post(reverse("ocrdash-host-revoke-key", args=["ocr-1"]))

    assert response.status_code == 302
    host.refresh_from_db()
    assert host.active_key is None and host.status == Host.Status.PENDING
    event = AuditEvent.objects.get(action=Action.HOST_KEY_REVOKED)
    assert event.actor == approver.username and event.details["fingerprint"] == fingerprint
    page = client.get(reverse("ocrdash-host", args=["ocr-1"])).content.decode()
    assert "key revoked" in page and "Revoke key" not in page


def test_it_refuses_host_key_revocation_to_an_operator(client_for, operator, make_host):
    make_host("ocr-1")
    assert client_for(operator).post(reverse("ocrdash-host-revoke-key", args=["ocr-1"])).status_code == 403
    assert Host.objects.get().active_key is not None


def test_the_api_makes_a_token_for_an_approver_only(client_for, approver, viewer):
    assert client_for(viewer).post("/api/enrollment-tokens/", {"label": "x"}).status_code == 403
    response = client_for(approver).post(
        "/api/enrollment-tokens/", {"label": "x", "hours": 2}, content_type="application/json"
    )
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    data = response.json()
    assert data["dashboard_public_key"] == trust.dashboard_public_key()
    assert data["token"] not in everything_stored()
    assert enroll_with(data["token"]) == "accepted"


def test_the_api_revokes_a_host_key(client_for, approver, viewer, make_host):
    make_host("ocr-1")
    url = "/api/hosts/ocr-1/revoke-key/"
    assert client_for(viewer).post(url).status_code == 403
    response = client_for(approver).post(url)
    assert response.status_code == 200 and response.json()["status"] == Host.Status.PENDING
    assert client_for(approver).post(url).status_code == 409


def test_the_commands_make_a_token_revoke_a_key_and_print_the_public_key(make_host):
    out, err = io.StringIO(), io.StringIO()
    call_command("create_enrollment_token", "--label", "demo", "--host", "fresh-1", stdout=out, stderr=err)
    token = out.getvalue().strip()
    assert token.startswith(ENROLLMENT_TOKEN_PREFIX) and token not in err.getvalue()
    assert token not in everything_stored()
    assert enroll_with(token) == "accepted"

    out = io.StringIO()
    call_command("create_enrollment_token", "--env", stdout=out, stderr=io.StringIO())
    lines = dict(line.split("=", 1) for line in out.getvalue().split())
    assert lines["OCRDASH_DASHBOARD_PUBLIC_KEY"] == trust.dashboard_public_key()
    assert lines["OCRDASH_ENROLLMENT_TOKEN"].startswith(ENROLLMENT_TOKEN_PREFIX)

    make_host("ocr-1")
    out = io.StringIO()
    call_command("revoke_host_key", "ocr-1", stdout=out)
    assert "revoked" in out.getvalue() and Host.objects.get(name="ocr-1").active_key is None

    out = io.StringIO()
    call_command("signing_key", stdout=out)
    assert out.getvalue().strip() == trust.dashboard_public_key()
