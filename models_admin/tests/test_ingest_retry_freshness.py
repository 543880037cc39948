"""Freshness is checked once, when a report first arrives (issue case 1, dashboard side).

Once, with PostgreSQL down for 2 minutes, 11 of 200 reports were refused on retry as "sent_at
too old; replay refused" (freshness was checked against the retry's clock) and recorded as
false security events, and one used up its 8 jittered retries in 97 s.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from models_admin import tasks
from models_admin.fleet import trust
from models_admin.models import AuditEvent, ReceivedReport
from workers.schema import FreeReport
from workers.signing.envelope import DASHBOARD_SIGNER, sign

from .conftest import signed_report

pytestmark = pytest.mark.django_db
A = AuditEvent.Action


def report_sent(minutes_ago: float) -> dict:
    sent_at = timezone.now() - timedelta(minutes=minutes_ago)
    return signed_report(FreeReport(host="ocr-1", freed=True, sent_at=sent_at))


def run_task(message: dict, receipt=None) -> str:
    [status] = tasks.ingest_report.apply(args=(message,), kwargs={"receipt": receipt}).get()
    return status


def test_a_retry_ten_minutes_later_is_judged_by_the_first_arrival(make_host):
    make_host("ocr-1")
    message = report_sent(minutes_ago=10)
    # The first attempt, 10 minutes ago, met a database that was away: it stamped the arrival.
    receipt = trust.receipt_stamp(message, timezone.now() - timedelta(minutes=10))

    assert run_task(message, receipt) == "accepted"
    assert not AuditEvent.objects.filter(action=A.SECURITY_REJECTED).exists()


def test_without_a_receipt_the_same_old_report_is_refused_as_stale(make_host):
    make_host("ocr-1")
    assert run_task(report_sent(minutes_ago=10)) == "rejected"
    assert "too old" in ReceivedReport.objects.get().reason


def test_a_receipt_the_dashboard_did_not_sign_or_for_another_report_changes_nothing(make_host):
    """Whoever can write to the broker must not pass a stale report by claiming an old arrival."""
    host = make_host("ocr-1")
    message = report_sent(minutes_ago=10)
    then = (timezone.now() - timedelta(minutes=10)).isoformat()
    from .conftest import HOST_KEYS

    forged = sign(
        {"report": "x", "received_at": then},
        HOST_KEYS[host.name],
        signer=DASHBOARD_SIGNER,
        purpose=trust.RECEIPT_PURPOSE,
    )
    other = trust.receipt_stamp(report_sent(minutes_ago=10), timezone.now() - timedelta(minutes=10))
    for receipt in (forged, other, {"junk": 1}, "text"):
        assert trust.receipt_time(message, receipt) is None
    assert run_task(message, forged) == "rejected"


def test_a_receipt_older_than_the_retry_window_does_not_pass_a_stale_report(make_host):
    make_host("ocr-1")
    message = report_sent(minutes_ago=120)
    receipt = trust.receipt_stamp(message, timezone.now() - timedelta(minutes=120))
    assert run_task(message, receipt) == "rejected"


def test_the_retries_outlast_a_ten_minute_outage_without_jitter():
    waited, retries = 0, 0
    while timedelta(seconds=waited) <= tasks.INGEST_RETRY_WINDOW:
        waited += tasks.ingest_retry_countdown(retries)
        retries += 1
        if waited >= 600:
            break
    assert waited >= 600 and timedelta(seconds=waited) <= tasks.INGEST_RETRY_WINDOW
    assert [tasks.ingest_retry_countdown(n) for n in range(6)] == [5, 10, 20, 40, 60, 60]
