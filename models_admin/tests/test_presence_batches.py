"""Heartbeats of a batch: one UPDATE for all of them, and every beat judged as it would be alone.

The ingest worker hands reports to the ingest task in batches (models_admin/tasks.py);
neighbouring heartbeats go to ``ingest.ingest_heartbeats`` together.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from models_admin import tasks
from models_admin.fleet import hosts
from models_admin.ingest import ingest_heartbeats, ingest_report
from models_admin.models import Host, ReceivedReport
from models_admin.tests.conftest import signed_report
from models_admin.tests.test_ingest import entries, facts
from workers.schema import FreeReport, HeartbeatReport, InventoryReport, ModelDirState

pytestmark = pytest.mark.django_db


def beat(host: str, sent_at, **fields) -> dict:
    fields.setdefault("interval_seconds", 30)
    fields.setdefault("model_dir_state", ModelDirState.OK)
    return signed_report(HeartbeatReport(host=host, sent_at=sent_at, **fields))


def warm(names: list[str], now) -> None:
    """One beat each, a second ago: the ingest process now holds every host's key."""
    for name in names:
        assert ingest_report(beat(name, now - timedelta(seconds=1))).status == "accepted"


def test_beats_of_many_hosts_are_one_update(make_host) -> None:
    names = [f"ocr-{i}" for i in range(5)]
    for name in names:
        make_host(name)
    now = timezone.now()
    warm(names, now)
    items = [(beat(name, now, disk_free=100 + i, backlog=i), None) for i, name in enumerate(names)]

    with CaptureQueriesContext(connection) as queries:
        results = ingest_heartbeats(items)

    assert [r.status for r in results] == ["accepted"] * 5
    assert len(queries.captured_queries) == 1, [q["sql"] for q in queries.captured_queries]
    assert queries.captured_queries[0]["sql"].lstrip().upper().startswith("UPDATE")
    rows = dict(Host.objects.filter(name__in=names).values_list("name", "disk_free"))
    assert rows == {name: 100 + i for i, name in enumerate(names)}
    assert not ReceivedReport.objects.exists()


def test_each_beat_gets_the_answer_it_would_get_alone(make_host) -> None:
    """A retired host, a revoked key, an older beat, two beats of one host, a forgery and a
    report of another kind, in one batch: the same outcomes as one by one."""
    for name in ("ocr-1", "ocr-2", "ocr-3", "ocr-4"):
        make_host(name)
    now = timezone.now()
    warm(["ocr-1", "ocr-2", "ocr-3", "ocr-4"], now)
    Host.objects.filter(name="ocr-2").update(status=Host.Status.RETIRED)
    hosts.revoke_key(Host.objects.get(name="ocr-3"), "admin")
    forged = beat("ocr-4", now)
    forged["disk_free"] = 1  # changed after signing
    items = [
        beat("ocr-1", now, disk_free=10),
        beat("ocr-1", now + timedelta(milliseconds=5), disk_free=11),  # the newer of two
        beat("ocr-1", now - timedelta(seconds=5), disk_free=9),  # older than the one taken
        beat("ocr-2", now),
        beat("ocr-3", now, disk_free=7),
        forged,
        signed_report(FreeReport(host="ocr-4", freed=True)),
        beat("ocr-4", now, disk_free=44),
    ]

    results = ingest_heartbeats([(data, None) for data in items])

    assert [r.status for r in results] == [
        "duplicate",  # ocr-1's first beat: its newer one of the same batch was taken
        "accepted",
        "duplicate",
        "duplicate",  # retired: dropped, not stored
        "rejected",  # revoked since it was cached
        "rejected",  # a bad signature
        "accepted",  # the free report, the single way
        "accepted",
    ]
    assert "revoked" in results[4].reason and "signature" in results[5].reason
    free = dict(Host.objects.values_list("name", "disk_free"))
    assert free["ocr-1"] == 11 and free["ocr-3"] != 7 and free["ocr-4"] == 44


def test_the_task_groups_neighbouring_beats_and_keeps_the_order(make_host) -> None:
    make_host("ocr-1", {"a.gguf": 10})
    make_host("ocr-2")
    now = timezone.now()
    stored = signed_report(InventoryReport(host="ocr-1", facts=facts(), files=entries({"a.gguf": 10})))
    messages = [
        tasks.Message(beat("ocr-1", now - timedelta(seconds=2), disk_free=1)),
        tasks.Message(beat("ocr-2", now - timedelta(seconds=2), disk_free=2)),
        tasks.Message(stored),
        tasks.Message(beat("ocr-1", now - timedelta(seconds=1), disk_free=3)),
        tasks.Message(beat("ocr-2", now - timedelta(seconds=1), disk_free=4)),
    ]

    with CaptureQueriesContext(connection) as queries:
        outcomes = tasks.ingest_messages(messages)

    assert outcomes == ["accepted"] * 5
    beat_updates = [q for q in queries.captured_queries if "heartbeat_sent_at = b.sent_at" in q["sql"]]
    assert len(beat_updates) == 2  # the two runs of beats around the inventory
    # The inventory came between the beats: the beats after it have the last word.
    assert dict(Host.objects.values_list("name", "disk_free")) == {"ocr-1": 3, "ocr-2": 4}


def test_a_new_hosts_first_beat_in_the_batch_of_its_enrolling_inventory_is_taken(enrollment_token) -> None:
    """The agent beats only once its enrolling inventory has gone out, but both may reach the
    worker in one batch: the beat must be judged after the inventory enrolled its key, as
    it would be one by one (the demo's first start mailed a refusal for each new host)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from .test_trust_reports import enrolling, inventory

    key = Ed25519PrivateKey.generate()
    report = enrolling(inventory("fresh-1", {"en.gguf": 3}), enrollment_token(), key)
    items = [
        (signed_report(report, key), None),
        (
            signed_report(
                HeartbeatReport(host="fresh-1", interval_seconds=30, model_dir_state=ModelDirState.OK), key
            ),
            None,
        ),
    ]

    results = ingest_heartbeats(items)

    assert [r.status for r in results] == ["accepted", "accepted"], results
    host = Host.objects.get(name="fresh-1")
    assert host.last_heartbeat_at is not None and host.active_key is not None
    assert not ReceivedReport.objects.filter(status=ReceivedReport.Status.REJECTED).exists()
