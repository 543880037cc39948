"""Heartbeats: one UPDATE (the day's disk point at most hourly), no snapshot or audit event; presence."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from models_admin.fleet.presence import waiting_note
from models_admin.models import AuditEvent, DiskSample, Host, PruneRequest, ReceivedReport, Snapshot
from models_admin.tests.conftest import ingest, signed_report
from workers.schema import HeartbeatReport, ModelDirState

pytestmark = pytest.mark.django_db
WRITES = ("INSERT", "UPDATE", "DELETE")


def beat(host: str, sent_at=None, **fields) -> HeartbeatReport:
    fields.setdefault("interval_seconds", 30)
    fields.setdefault("model_dir_state", ModelDirState.OK)
    return HeartbeatReport(host=host, sent_at=sent_at or timezone.now(), **fields)


def test_a_heartbeat_is_one_update_and_the_days_disk_point_without_snapshot_row_or_audit_event(
    make_host,
) -> None:
    host = make_host("ocr-1")
    Host.objects.filter(pk=host.pk).update(last_seen=timezone.now() - timedelta(hours=1))
    before = (Snapshot.objects.count(), ReceivedReport.objects.count(), AuditEvent.objects.count())
    from models_admin.ingest import ingest_report

    data = signed_report(beat("ocr-1", disk_free=123, disk_total=456, backlog=2, labels={"env": "prod"}))
    with CaptureQueriesContext(connection) as queries:
        result = ingest_report(data)
    assert result.status == "accepted"
    writes = [
        q["sql"] for q in queries.captured_queries if not q["sql"].lstrip().upper().startswith("SELECT")
    ]
    # Its UPDATE, and (the host's first beat this hour) the day's disk point: test_capacity_heartbeat_disk.py.
    assert [w.split()[0] for w in writes] == ["UPDATE", "INSERT"], writes
    assert DiskSample._meta.db_table in writes[1]
    assert (Snapshot.objects.count(), ReceivedReport.objects.count(), AuditEvent.objects.count()) == before
    host.refresh_from_db()
    assert (host.disk_free, host.disk_total, host.backlog, host.heartbeat_seconds) == (123, 456, 2, 30)
    assert host.reported_labels == {"env": "prod"} and host.labels == {}
    assert timezone.now() - host.last_seen < timedelta(seconds=5)
    assert host.presence() == "online"


def test_a_beat_checked_against_the_cached_key_is_its_one_statement(make_host) -> None:
    make_host("ocr-1")
    from models_admin.ingest import ingest_report

    now = timezone.now()
    assert (
        ingest_report(signed_report(beat("ocr-1", sent_at=now - timedelta(seconds=1)))).status == "accepted"
    )
    with CaptureQueriesContext(connection) as queries:
        assert ingest_report(signed_report(beat("ocr-1", sent_at=now, disk_free=7))).status == "accepted"
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    assert queries.captured_queries[0]["sql"].lstrip().upper().startswith("UPDATE")
    assert Host.objects.get(name="ocr-1").disk_free == 7


def test_a_beat_signed_by_a_key_revoked_since_it_was_cached_is_refused(make_host) -> None:
    host = make_host("ocr-1")
    from models_admin.fleet import hosts
    from models_admin.ingest import ingest_report

    now = timezone.now()
    assert (
        ingest_report(signed_report(beat("ocr-1", sent_at=now - timedelta(seconds=1)))).status == "accepted"
    )
    heard = Host.objects.get(pk=host.pk).last_heartbeat_at
    hosts.revoke_key(host, "admin")

    result = ingest_report(signed_report(beat("ocr-1", sent_at=now, disk_free=7)))
    assert result.status == "rejected" and "revoked" in result.reason
    host.refresh_from_db()
    assert host.last_heartbeat_at == heard and host.disk_free != 7
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SECURITY_REJECTED).count() == 1


def test_a_replayed_or_older_heartbeat_changes_nothing(make_host) -> None:
    make_host("ocr-1")
    now = timezone.now()
    first = signed_report(beat("ocr-1", sent_at=now, disk_free=1))
    from models_admin.ingest import ingest_report

    assert ingest_report(first).status == "accepted"
    assert ingest_report(first).status == "duplicate"  # the very same signed beat again
    older = beat("ocr-1", sent_at=now - timedelta(seconds=10), disk_free=2)
    assert ingest(older).status == "duplicate"
    assert Host.objects.get(name="ocr-1").disk_free == 1
    assert ingest(beat("ocr-1", sent_at=now + timedelta(seconds=1), disk_free=3)).status == "accepted"
    assert Host.objects.get(name="ocr-1").disk_free == 3


def test_a_retired_hosts_heartbeat_is_dropped_without_a_trace_row(make_host) -> None:
    make_host("ocr-1", status=Host.Status.RETIRED)
    events = AuditEvent.objects.count()
    result = ingest(beat("ocr-1", disk_free=7))
    assert result.status == "duplicate" and "retired" in result.reason
    assert Host.objects.get(name="ocr-1").disk_free != 7
    assert AuditEvent.objects.count() == events and not ReceivedReport.objects.exists()


def test_an_unsigned_heartbeat_is_refused_as_any_report(make_host) -> None:
    make_host("ocr-1")
    from models_admin.ingest import ingest_report

    result = ingest_report(beat("ocr-1").to_json())
    assert result.status == "rejected"
    assert AuditEvent.objects.filter(action=AuditEvent.Action.SECURITY_REJECTED).exists()


def test_malformed_heartbeat_labels_are_rejected_with_the_reason(make_host) -> None:
    make_host("ocr-1")
    body = beat("ocr-1").to_json()
    body["labels"] = {"Bad Key": "x"}
    result = ingest(body)
    assert result.status == "rejected" and "labels" in result.reason


def test_presence_is_offline_after_three_missed_beats_and_missing_later(make_host, settings) -> None:
    settings.OCRDASH = {**settings.OCRDASH, "HOST_MISSING_AFTER_MINUTES": 60}
    host = make_host("ocr-1")
    ingest(beat("ocr-1", interval_seconds=10))
    host.refresh_from_db()
    heard = host.last_seen
    assert host.presence(heard + timedelta(seconds=29)) == "online"
    assert host.presence(heard + timedelta(seconds=31)) == "offline"
    assert host.presence(heard + timedelta(minutes=61)) == "missing"


def test_an_agent_without_heartbeats_keeps_the_long_offline_threshold(make_host, settings) -> None:
    host = make_host("ocr-1")
    minutes = settings.OCRDASH["HOST_OFFLINE_AFTER_MINUTES"]
    assert host.heartbeat_seconds is None
    assert host.presence(host.last_seen + timedelta(minutes=minutes - 1)) == "online"
    assert host.presence(host.last_seen + timedelta(minutes=minutes + 1)) == "offline"


def test_the_request_page_says_which_offline_host_it_waits_for(
    make_host, dispatched_request, client_for, viewer
) -> None:
    host = make_host("ocr-7")
    request = dispatched_request(host)
    assert waiting_note(request) == ""
    quiet = timezone.now() - timedelta(minutes=5)
    Host.objects.filter(pk=host.pk).update(heartbeat_seconds=30, last_seen=quiet)
    request = PruneRequest.objects.select_related("host").get(pk=request.pk)
    stamp = timezone.localtime(quiet).strftime("%H:%M")
    assert waiting_note(request) == f"waiting for ocr-7, offline since {stamp}"
    page = client_for(viewer).get(reverse("ocrdash-request", args=[request.id]))
    assert f"Waiting for ocr-7, offline since {stamp}" in page.content.decode()


def test_the_fleet_page_shows_a_silent_heartbeating_host_offline(make_host, client_for, viewer) -> None:
    host = make_host("ocr-1")
    Host.objects.filter(pk=host.pk).update(
        heartbeat_seconds=10, last_seen=timezone.now() - timedelta(seconds=45)
    )
    rows = client_for(viewer).get(reverse("ocrdash-fleet-rows")).json()["tbody"]
    assert "offline" in rows
