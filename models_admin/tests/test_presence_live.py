"""A stopped agent goes offline on the fleet page within two minutes and comes back when it
restarts: the real agent worker beating every 2 s into the real ingest worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from django.urls import reverse

from models_admin.models import AuditEvent, Host, ReceivedReport

from .processes import running_fleet, unique_host_name

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def test_a_stopped_agent_is_offline_within_two_minutes_and_back_after_restart(
    tmp_path: Path, client_for, viewer
) -> None:
    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v1.gguf").write_bytes(b"english")
    name = unique_host_name("beat")
    env = {"OCRDASH_HEARTBEAT_SECONDS": "2", "OCRDASH_HOST_LABELS": "region=eu"}
    with running_fleet(name, models, tmp_path, agent_env=env) as fleet:
        host = fleet.wait_for(
            "heartbeats", lambda: Host.objects.filter(name=name, heartbeat_seconds=2).first(), timeout=120
        )
        assert host.reported_labels == {"region": "eu"} and host.presence() == "online"
        reports = ReceivedReport.objects.filter(host_name=name).count()
        events = AuditEvent.objects.filter(host=name).count()
        time.sleep(5)  # a few more beats: they store no report row and no audit event
        assert ReceivedReport.objects.filter(host_name=name).count() == reports
        assert AuditEvent.objects.filter(host=name).count() == events
        client = client_for(viewer)

        def row() -> str:
            tbody = client.get(reverse("ocrdash-fleet-rows")).json()["tbody"]
            return tbody[tbody.index(name) :].split("</tr>", 1)[0]

        assert "dot-online" in row()

        fleet.agent.stop()
        stopped = time.monotonic()
        fleet.wait_for("the fleet page to show it offline", lambda: "dot-offline" in row(), timeout=120)
        assert time.monotonic() - stopped < 120
        assert "offline" in client.get(reverse("ocrdash-host", args=[name])).content.decode()

        fleet.agent.start()
        fleet.wait_for("the fleet page to show it online again", lambda: "dot-online" in row(), timeout=120)
