"""API on history: audit events with filters, rejected reports."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from models_admin.ingest import ingest_report
from models_admin.models import AuditEvent

from .conftest import signed_report

pytestmark = pytest.mark.django_db


def test_audit_filters_by_host_actor_action_and_time(client_for, viewer):
    now = timezone.now()
    AuditEvent.objects.create(at=now - timedelta(days=2), actor="alice", action="host_accepted", host="a")
    AuditEvent.objects.create(at=now - timedelta(hours=1), actor="bob", action="host_retired", host="a")
    AuditEvent.objects.create(at=now, actor="alice", action="host_retired", host="b")
    api = client_for(viewer)

    def actions(**query) -> list[tuple[str, str]]:
        return [(e["actor"], e["host"]) for e in api.get("/api/audit/", query).json()["results"]]

    assert actions(host="a") == [("bob", "a"), ("alice", "a")]
    assert actions(actor="alice") == [("alice", "b"), ("alice", "a")]
    assert actions(action="host_retired") == [("alice", "b"), ("bob", "a")]
    since = (now - timedelta(days=1)).isoformat()
    until = (now - timedelta(minutes=1)).isoformat()
    assert actions(since=since, until=until) == [("bob", "a")]
    assert api.get("/api/audit/", {"since": "yesterday"}).status_code == 400


def test_rejected_reports_are_listed_with_their_reason(client_for, viewer, make_host):
    make_host("ocr-9")
    ingest_report(signed_report({"schema_version": 7, "host": "ocr-9", "kind": "free", "report_id": "r-1"}))
    ingest_report({"schema_version": 2, "host": "ocr-9", "kind": "free", "report_id": "r-2"})

    rows = client_for(viewer).get("/api/reports/rejected/").json()["results"]

    by_reason = {row["reason"]: row for row in rows}
    [unsupported] = [r for reason, r in by_reason.items() if "unsupported schema_version" in reason]
    assert unsupported["host_name"] == "ocr-9" and unsupported["payload"]["schema_version"] == 7
    assert by_reason["security: unsigned"]["host_name"] == "ocr-9"
