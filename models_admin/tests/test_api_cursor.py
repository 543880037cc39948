"""The append-only lists (audit, rejected reports) page by cursor: no COUNT(*) of the whole
table per page, and a script walking them sees every row once even while rows are added."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from models_admin.models import AuditEvent, ReceivedReport

pytestmark = pytest.mark.django_db


def _event(minutes_ago: int, actor: str) -> AuditEvent:
    return AuditEvent.objects.create(
        at=timezone.now() - timedelta(minutes=minutes_ago), actor=actor, action="host_accepted"
    )


def test_walking_the_audit_by_cursor_sees_each_event_once_while_new_ones_arrive(client_for, viewer):
    for i in range(7):
        _event(100 - i, f"old-{i}")
    _event(50, "tie-a"), _event(50, "tie-b")  # same instant: the id keeps them apart
    api = client_for(viewer)
    seen: list[str] = []
    url: str | None = "/api/audit/?limit=3"
    while url:
        with CaptureQueriesContext(connection) as queries:
            body = api.get(url).json()
        assert "count" not in body
        assert not [q["sql"] for q in queries if "COUNT(" in q["sql"].upper() and "audit" in q["sql"]]
        seen += [e["actor"] for e in body["results"]]
        _event(0, f"new-{len(seen)}")  # written while the script walks: newer, so not on later pages
        url = body["next"]
    assert seen == ["tie-b", "tie-a"] + [f"old-{i}" for i in reversed(range(7))]


def test_an_offset_on_a_cursor_list_is_a_400_that_says_how_to_page(client_for, viewer):
    response = client_for(viewer).get("/api/audit/?offset=100")
    assert response.status_code == 400
    assert "follow the next link" in str(response.json())
    assert client_for(viewer).get("/api/audit/?limit=0").status_code == 400


def test_rejected_reports_page_by_cursor_too(client_for, viewer, settings):
    settings.OCRDASH = {**settings.OCRDASH, "API_MAX_PAGE_SIZE": 2}
    for i in range(3):
        ReceivedReport.objects.create(
            host_name="ocr-1", kind="free", status=ReceivedReport.Status.REJECTED, reason=f"r{i}", payload={}
        )
    first = client_for(viewer).get("/api/reports/rejected/?limit=50").json()
    assert len(first["results"]) == 2 and "count" not in first
    second = client_for(viewer).get(first["next"]).json()
    assert [r["reason"] for r in first["results"] + second["results"]] == ["r2", "r1", "r0"]
