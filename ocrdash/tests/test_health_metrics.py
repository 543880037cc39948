"""/healthz and /metrics against the real test PostgreSQL and Redis."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from models_admin.models import Host, PruneItem, PruneRequest, ReceivedReport
from models_admin.quarantine.purge import record_purge
from workers.schema import PurgedRequest, PurgeReport

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "scrape-token-for-tests-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def beat_ran():
    every, _ = IntervalSchedule.objects.get_or_create(every=5, period=IntervalSchedule.MINUTES)
    PeriodicTask.objects.create(
        name="health-test", task="ocrdash.test", interval=every, last_run_at=timezone.now()
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_healthz_is_200_on_a_healthy_setup_without_a_login(client, beat_ran):
    response = client.get("/healthz", HTTP_ACCEPT="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body.values()) == {"OK"}
    assert any("Broker" in k for k in body) and any("IngestQueue" in k for k in body)
    assert client.get("/healthz/web?format=json").status_code == 200


def test_healthz_names_the_broker_when_its_port_is_closed(client, beat_ran, settings):
    url = f"redis://127.0.0.1:{_closed_port()}/0"
    settings.CELERY_BROKER_URL = url
    response = client.get("/healthz?format=json")
    assert response.status_code == 503
    body = response.json()
    broken = {k for k, v in body.items() if v != "OK"}
    assert broken and all("Broker" in k or "IngestQueue" in k for k in broken), body
    assert "Unavailable" in next(v for k, v in body.items() if "Broker" in k)
    assert "Database" in " ".join(k for k, v in body.items() if v == "OK")


def test_a_failing_database_and_broker_read_as_one_line_each(tmp_path):
    """In a process of its own (the database is unreachable from its start): the answer has one
    line per check saying what failed and why, naming no host; each failure is one log line."""
    script = tmp_path / "ask.py"
    script.write_text(
        "import django\n"
        "django.setup()\n"
        "from django.test import Client\n"
        "print(Client(HTTP_HOST='localhost').get('/healthz/web?format=text').content.decode(), end='')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "DJANGO_", "CELERY_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="ocrdash.settings_test",
        OCRDASH_TEST_DATABASE_URL=f"postgres://secret-user:secret-pw@127.0.0.1:{_closed_port()}/nodb",
        OCRDASH_TEST_BROKER_URL=f"redis://127.0.0.1:{_closed_port()}/0",
        OCRDASH_HEALTH_TIMEOUT_SECONDS="1",
    )
    done = subprocess.run(
        [sys.executable, str(script)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "Database(alias='default'): Unavailable: database connection failed: connection refused"
        " (OperationalError)",
        "Broker(): Unavailable: broker unreachable: connection refused (OperationalError)",
    ]
    assert "secret" not in done.stdout and "127.0.0.1" not in done.stdout
    failures = [line for line in done.stderr.splitlines() if " health_check " in line]
    assert len(failures) == 2 and all("Traceback" not in line for line in failures), failures
    assert all(
        re.match(r"\S+Z WARNING health_check request=\w+ Health check \w+\(.*\) failed: ", f)
        for f in failures
    )
    assert any("connection refused" in f.lower() and "Database" in f for f in failures), failures


def test_healthz_fails_when_beat_is_quiet_or_ingest_backed_up(client, beat_ran, settings):
    PeriodicTask.objects.update(last_run_at=timezone.now() - timedelta(hours=2))
    body = client.get("/healthz?format=json").json()
    assert "beat last ran" in next(v for k, v in body.items() if "BeatRecent" in k)
    PeriodicTask.objects.update(last_run_at=timezone.now())
    settings.OCRDASH = {**settings.OCRDASH, "HEALTH_INGEST_QUEUE_MAX": 0}
    response = client.get("/healthz?format=json")
    assert response.status_code == 503
    assert "waiting on the ingest queue" in next(v for k, v in response.json().items() if "IngestQueue" in k)


def test_metrics_refuse_without_credentials_and_with_a_wrong_token(client, settings):
    settings.OCRDASH = {**settings.OCRDASH, "METRICS_TOKEN": TOKEN}
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 403
    user = get_user_model().objects.create_user("viewer-m", password="x")
    client.force_login(user)
    assert client.get("/metrics").status_code == 403


def _gauges(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_metrics_gauges_count_the_rows(client, settings):
    settings.OCRDASH = {**settings.OCRDASH, "METRICS_TOKEN": TOKEN}
    now = timezone.now()
    Host.objects.create(name="m-online", status=Host.Status.ACTIVE, last_seen=now)
    Host.objects.create(name="m-online2", status=Host.Status.ACTIVE, last_seen=now, heartbeat_seconds=30)
    Host.objects.create(
        name="m-offline",
        status=Host.Status.ACTIVE,
        last_seen=now - timedelta(minutes=5),
        heartbeat_seconds=30,
    )
    Host.objects.create(name="m-missing", status=Host.Status.ACTIVE, last_seen=now - timedelta(days=3))
    Host.objects.create(name="m-pending", status=Host.Status.PENDING)
    host = Host.objects.create(name="m-retired", status=Host.Status.RETIRED)
    exp = now + timedelta(days=1)
    for _ in range(3):
        PruneRequest.objects.create(host=host, reason="t", expires_at=exp)
    done = PruneRequest.objects.create(host=host, reason="t", expires_at=exp, state="completed")
    for i, size in enumerate((100, 250, 4000)):
        PruneItem.objects.create(
            request=done,
            path=f"/m/{i}",
            size=size,
            mtime_ns=0,
            sha256="0" * 64,
            outcome="quarantined",
            bytes_reclaimed=size,
        )
    back = PruneRequest.objects.create(
        host=host, reason="t", expires_at=exp, state="completed", kind="restore", restore_of=done
    )
    PruneItem.objects.create(
        request=back, path="/m/2", size=4000, mtime_ns=0, sha256="0" * 64, outcome="restored"
    )
    ReceivedReport.objects.create(report_id="a", status="rejected", received_at=now - timedelta(seconds=60))
    ReceivedReport.objects.create(report_id="b", status="rejected", received_at=now - timedelta(seconds=90))
    ReceivedReport.objects.create(report_id="c", status="accepted", received_at=now - timedelta(seconds=40))

    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    g = _gauges(response.content.decode())
    assert g['ocrdash_hosts{presence="online"}'] == 2
    assert g['ocrdash_hosts{presence="offline"}'] == 1
    assert g['ocrdash_hosts{presence="missing"}'] == 1
    assert g['ocrdash_hosts{presence="pending"}'] == 1
    assert g['ocrdash_hosts{presence="retired"}'] == 1
    assert g["ocrdash_pending_approvals"] == 3
    assert g["ocrdash_rejected_reports"] == 2
    assert g["ocrdash_quarantine_bytes"] == 350
    assert 40 <= g["ocrdash_ingest_last_report_age_seconds"] < 100
    assert "ocrdash_ingest_queue_length" in g


def test_the_quarantine_gauge_leaves_out_purged_files_and_restores_of_the_other_store(client, settings):
    """Bytes purged are freed on disk, no longer in quarantine; a restore gives back only the
    file of its own store (the model folder and the OCR resources may share a relative path)."""
    settings.OCRDASH = {**settings.OCRDASH, "METRICS_TOKEN": TOKEN}
    host = Host.objects.create(name="m-q", status=Host.Status.ACTIVE, last_seen=timezone.now())
    exp = timezone.now() + timedelta(days=1)
    done = PruneRequest.objects.create(host=host, reason="t", expires_at=exp, state="completed")
    for store, size in (("llm", 100), ("ocr", 30)):
        PruneItem.objects.create(
            request=done,
            store=store,
            path="m/x.bin",
            size=size,
            mtime_ns=0,
            sha256="0" * 64,
            outcome="quarantined",
            bytes_reclaimed=size,
        )
    back = PruneRequest.objects.create(
        host=host, reason="t", expires_at=exp, state="completed", kind="restore", restore_of=done
    )
    PruneItem.objects.create(
        request=back, store="ocr", path="m/x.bin", size=30, mtime_ns=0, sha256="0" * 64, outcome="restored"
    )
    old = PruneRequest.objects.create(host=host, reason="t", expires_at=exp, state="completed")
    PruneItem.objects.create(
        request=old,
        path="m/old.bin",
        size=7,
        mtime_ns=0,
        sha256="0" * 64,
        outcome="quarantined",
        bytes_reclaimed=7,
    )

    def gauge() -> float:
        text = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").content.decode()
        return _gauges(text)["ocrdash_quarantine_bytes"]

    assert gauge() == 107
    report = PurgeReport(
        host="m-q",
        purged_requests=[old.id.hex],
        bytes_purged=7,
        purged=[PurgedRequest(request_id=old.id.hex, bytes_purged=7, files=1)],
        freed=True,
    )
    with transaction.atomic():
        record_purge(host, report, timezone.now())
    assert gauge() == 100


def test_metrics_take_a_constant_number_of_queries(client, settings, django_assert_max_num_queries):
    settings.OCRDASH = {**settings.OCRDASH, "METRICS_TOKEN": TOKEN}
    for i in range(30):
        Host.objects.create(name=f"q-{i}", status=Host.Status.ACTIVE, last_seen=timezone.now())
    with django_assert_max_num_queries(5):
        assert client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}").status_code == 200


def test_a_superuser_session_may_read_metrics(client):
    admin = get_user_model().objects.create_superuser("root-m", password="x")
    client.force_login(admin)
    assert client.get("/metrics").status_code == 200
