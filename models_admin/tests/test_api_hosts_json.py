"""The host JSON that HostSerializer writes by hand is, key for key and value for value, what
DRF's generic field machinery writes from the same declared fields, which are the ones the
schema publishes; and the host list costs the same number of queries for 3 hosts as for 30."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from rest_framework import serializers as drf

from models_admin.api.serializers import HostSerializer
from models_admin.models import Host

pytestmark = pytest.mark.django_db

FIELDS = [
    "name",
    "status",
    "is_missing",
    "presence",
    "hostname",
    "first_seen",
    "last_seen",
    "agent_version",
    "aspose_version",
    "model_dir",
    "model_dir_state",
    "disk_total",
    "disk_free",
    "forecast_days",
    "forecast_note",
    "file_count",
    "total_bytes",
    "last_error",
    "last_error_at",
    "heartbeat_seconds",
    "last_heartbeat_at",
    "backlog",
    "labels",
    "reported_labels",
    "accepted_by",
    "accepted_at",
    "current_snapshot",
]
SNAPSHOT_FIELDS = ["id", "taken_at", "last_seen_at", "seen_count", "digest", "file_count", "total_bytes"]


@pytest.fixture
def fleet(make_host):
    """One host of each kind the JSON distinguishes: present with everything set, missing,
    offline by its heartbeats, and registered with no report and no snapshot yet."""
    now = timezone.now()
    full = make_host("ocr-full")
    Host.objects.filter(pk=full.pk).update(
        status=Host.Status.ACTIVE,
        last_seen=now - timedelta(seconds=5, microseconds=123_456),
        heartbeat_seconds=30,
        last_heartbeat_at=now - timedelta(seconds=5),
        backlog=3,
        forecast_days=12.5,
        forecast_note="",
        last_error="inventory: permission denied",
        last_error_at=now - timedelta(hours=1, microseconds=7),
        labels={"env": "prod", "region": "eu"},
        reported_labels={"rack": "r12"},
        accepted_by="approver",
        accepted_at=now - timedelta(days=3),
    )
    missing = make_host("ocr-missing")
    Host.objects.filter(pk=missing.pk).update(last_seen=now - timedelta(days=2), forecast_note="not filling")
    offline = make_host("ocr-offline", status=Host.Status.PENDING)
    Host.objects.filter(pk=offline.pk).update(last_seen=now - timedelta(minutes=5), heartbeat_seconds=30)
    Host.objects.create(name="ocr-never", last_seen=None, model_dir_state=Host.DirState.UNKNOWN)
    return ["ocr-full", "ocr-missing", "ocr-never", "ocr-offline"]


def _generic(host: Host) -> dict:
    """The JSON of DRF's own ModelSerializer path over HostSerializer's declared fields."""
    data = drf.ModelSerializer.to_representation(HostSerializer(), host)
    return json.loads(json.dumps(data))


def test_the_list_writes_what_the_declared_fields_would(fleet, client_for, viewer):
    rows = client_for(viewer).get("/api/hosts/").json()["results"]

    assert [row["name"] for row in rows] == fleet
    by_name = {row["name"]: row for row in rows}
    assert {name: by_name[name]["presence"] for name in fleet} == {
        "ocr-full": "online",
        "ocr-missing": "missing",
        "ocr-never": "never",
        "ocr-offline": "offline",
    }
    assert by_name["ocr-missing"]["is_missing"] is True and by_name["ocr-full"]["is_missing"] is False
    assert by_name["ocr-never"]["current_snapshot"] is None
    assert by_name["ocr-full"]["labels"] == {"env": "prod", "region": "eu"}
    assert by_name["ocr-full"]["last_seen"].endswith("Z")
    for row in rows:
        assert list(row) == FIELDS
        if row["current_snapshot"] is not None:
            assert list(row["current_snapshot"]) == SNAPSHOT_FIELDS
        host = Host.objects.select_related("current_snapshot").get(name=row["name"])
        assert row == _generic(host), row["name"]


def test_the_detail_and_another_time_zone_match_the_declared_fields(fleet, client_for, viewer):
    api = client_for(viewer)
    for name in fleet:
        assert api.get(f"/api/hosts/{name}/").json() == _generic(Host.objects.get(name=name))
    with timezone.override("Asia/Kolkata"):
        for host in Host.objects.select_related("current_snapshot"):
            lean = HostSerializer(host).data
            assert lean == _generic(host)
            assert lean["first_seen"].endswith("+05:30")


def test_a_page_of_30_hosts_takes_the_queries_of_a_page_of_3(make_host, client_for, viewer):
    api = client_for(viewer)
    api.get("/api/hosts/")  # the session and the user read once, as for any later request
    for i in range(3):
        make_host(f"ocr-{i:02d}")
    with CaptureQueriesContext(connection) as small:
        assert len(api.get("/api/hosts/").json()["results"]) == 3
    for i in range(3, 30):
        make_host(f"ocr-{i:02d}")
    with CaptureQueriesContext(connection) as large:
        assert len(api.get("/api/hosts/").json()["results"]) == 30
    assert len(large) == len(small), [q["sql"] for q in large.captured_queries]


def test_the_schema_publishes_these_fields_and_no_other():
    components = SchemaGenerator().get_schema(request=None, public=True)["components"]["schemas"]
    assert list(components["Host"]["properties"]) == FIELDS
    assert list(components["Snapshot"]["properties"]) == SNAPSHOT_FIELDS
    assert components["Host"]["properties"]["current_snapshot"]["allOf"] == [
        {"$ref": "#/components/schemas/Snapshot"}
    ]
    assert "description" not in components["Host"]  # as before the JSON was written by hand
