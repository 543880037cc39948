"""The ingest task: registered by the agents' task name, and never a crashed worker."""

from __future__ import annotations

import pytest

from models_admin import ingest, tasks
from models_admin.models import AuditEvent, ReceivedReport
from ocrdash.celery import app, route_task
from workers.schema import INGEST_QUEUE, INGEST_TASK, FreeReport

from .conftest import signed_report

pytestmark = pytest.mark.django_db


def test_it_is_registered_under_the_agents_task_name():
    assert app.tasks[INGEST_TASK] is tasks.ingest_report._get_current_object()
    assert route_task(INGEST_TASK, [{}], {}, {}) == {"queue": INGEST_QUEUE}


def test_it_stores_a_report(make_host):
    make_host("ocr-1", {})
    result = tasks.ingest_report.apply(args=(signed_report(FreeReport(host="ocr-1", freed=True)),))
    assert result.get() == ["accepted"]
    assert ReceivedReport.objects.get().status == ReceivedReport.Status.ACCEPTED


def test_it_keeps_a_report_that_crashed_ingest_instead_of_raising(make_host, monkeypatch):
    make_host("ocr-1", {})

    def broken(host, report, now):
        raise KeyError("a bug")

    # Fault injection: a bug anywhere in ingest must end as a stored, visible rejection.
    monkeypatch.setitem(ingest.APPLY, "free", broken)
    report = signed_report(FreeReport(host="ocr-1", freed=True))

    result = tasks.ingest_report.apply(args=(report,))

    assert result.successful() and result.get() == ["rejected"]
    row = ReceivedReport.objects.get()
    assert row.status == ReceivedReport.Status.REJECTED
    assert "KeyError" in row.reason and row.report_id == report["report_id"]
    assert AuditEvent.objects.filter(action=AuditEvent.Action.REPORT_REJECTED).exists()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.REPORT_INGESTED).exists()
