"""The audit log page, its CSV export, and the rejected reports page."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from models_admin.models import AuditEvent, ReceivedReport

Action = AuditEvent.Action


def _events():
    now = timezone.now()
    AuditEvent.objects.create(
        at=now - timedelta(days=10), actor="otto", action=Action.REQUEST_PROPOSED, host="ocr-1"
    )
    AuditEvent.objects.create(
        at=now - timedelta(days=1), actor="alice", action=Action.REQUEST_APPROVED, host="ocr-1"
    )
    AuditEvent.objects.create(
        at=now,
        actor="agent:ocr-2",
        action=Action.ITEM_OUTCOME,
        host="ocr-2",
        details={"path": 'a,"b".bin', "n": 1},
    )


def test_it_lists_newest_first(client_for, viewer):
    _events()
    page = client_for(viewer).get(reverse("ocrdash-audit")).context["page"]
    assert [e.actor for e in page] == ["agent:ocr-2", "alice", "otto"]


def test_it_filters_by_host_user_action_and_dates(client_for, viewer):
    _events()
    client = client_for(viewer)

    def actors(**query):
        return [e.actor for e in client.get(reverse("ocrdash-audit"), query).context["page"]]

    assert actors(host="ocr-1") == ["alice", "otto"]
    assert actors(actor="otto") == ["otto"]
    assert actors(action=Action.REQUEST_APPROVED) == ["alice"]
    since = (timezone.localdate() - timedelta(days=2)).isoformat()
    until = (timezone.localdate() - timedelta(days=5)).isoformat()
    assert actors(since=since) == ["agent:ocr-2", "alice"]
    assert actors(until=until) == ["otto"]


def test_it_paginates(client_for, viewer):
    AuditEvent.objects.bulk_create(AuditEvent(actor=f"u{i}", action=Action.LOGIN_FAILED) for i in range(120))
    client = client_for(viewer)
    assert len(client.get(reverse("ocrdash-audit")).context["page"]) == 50
    assert len(client.get(reverse("ocrdash-audit"), {"page": 3}).context["page"]) == 20


def test_it_exports_the_filtered_log_as_csv_that_round_trips(client_for, viewer):
    _events()
    response = client_for(viewer).get(reverse("ocrdash-audit-export"), {"host": "ocr-2"})
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 1
    assert (rows[0]["actor"], rows[0]["action"], rows[0]["host"]) == ("agent:ocr-2", "item_outcome", "ocr-2")
    assert json.loads(rows[0]["details"]) == {"path": 'a,"b".bin', "n": 1}


def test_it_exports_everything_without_filters(client_for, viewer):
    _events()
    response = client_for(viewer).get(reverse("ocrdash-audit-export"))
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0] == ["at", "actor", "action", "host", "object_type", "object_id", "details"]
    assert [r[1] for r in rows[1:]] == ["agent:ocr-2", "alice", "otto"]


def test_it_lists_rejected_reports_with_their_reason(client_for, viewer):
    ReceivedReport.objects.create(
        report_id="r1", host_name="ocr-9", kind="inventory", status="rejected", reason="bad v7"
    )
    ReceivedReport.objects.create(report_id="r2", host_name="ocr-1", kind="inventory", status="accepted")
    response = client_for(viewer).get(reverse("ocrdash-rejected-reports"))
    assert [r.report_id for r in response.context["page"]] == ["r1"]
    assert "bad v7" in response.content.decode()


def test_the_audit_page_counts_no_further_than_its_cap(client_for, viewer, monkeypatch):
    from models_admin.views import CappedPaginator

    monkeypatch.setattr(CappedPaginator, "cap", 60)
    AuditEvent.objects.bulk_create(
        AuditEvent(action=AuditEvent.Action.LOGIN_FAILED, actor=f"u{i}") for i in range(130)
    )

    response = client_for(viewer).get(reverse("ocrdash-audit"))

    assert response.context["page"].paginator.count == 61  # asked for cap + 1, not 130
    assert "more than 60" in response.content.decode()
