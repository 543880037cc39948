"""The ingest worker keeps one PostgreSQL connection across reports and gets a fresh one after
the database restarts.

A private PostgreSQL server (initdb into a temporary folder, its own port) so the restart hurts
nobody else; a real ``celery -A ocrdash worker`` with the production settings on it.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.conf import settings
from django.utils import timezone
from kombu import Connection

from ocrdash.celery import app
from workers.schema import INGEST_TASK, HostFacts, InventoryReport, ModelDirState
from workers.signing.envelope import sign

from .private_postgres import PrivatePostgres, dashboard_env, enroll_host, private_postgres_server
from .processes import start, stop

pytestmark = pytest.mark.slow


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    with private_postgres_server() as server:
        yield server


def _report(host: str, key: Ed25519PrivateKey, n: int) -> dict:
    facts = HostFacts(hostname=host, model_dir="/srv/models", model_dir_state=ModelDirState.OK, disk_free=n)
    body = InventoryReport(host=host, facts=facts, files=[]).to_json()
    body["sent_at"] = timezone.now().isoformat()
    return sign(body, key, signer=host, purpose=INGEST_TASK)


def _stored(conn: psycopg.Connection, ids: list[str], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = conn.execute(
            "SELECT count(*) FROM models_admin_receivedreport"
            " WHERE report_id = ANY(%s) AND status = 'accepted'",
            [ids],
        ).fetchone()
        if row and row[0] == len(ids):
            return
        time.sleep(0.2)
    pytest.fail(f"only {row[0] if row else 0} of {len(ids)} reports stored\n{log.read_text()[-4000:]}")


def _sessions(conn: psycopg.Connection) -> int:
    """Sessions ever opened on the database (PostgreSQL 14+ counts them)."""
    return conn.execute("SELECT sessions FROM pg_stat_database WHERE datname = 'ocrdash'").fetchone()[0]


def test_the_ingest_worker_reuses_its_connection_and_reconnects_after_a_restart(private_postgres, tmp_path):

    host, key = "reuse-1", Ed25519PrivateKey.generate()
    env = dashboard_env(private_postgres.url)
    enroll_host(env, host, key)
    queue, log = f"ocrdash.ingest.reuse-{uuid.uuid4().hex[:8]}", tmp_path / "worker.log"
    worker = start(
        [
            *(sys.executable, "-m", "celery", "-A", "ocrdash", "worker", "-Q", queue, "-c", "1"),
            *("-n", f"{queue}@localhost", "--without-gossip", "--without-mingle", "--without-heartbeat"),
        ],
        env,
        log,
    )
    try:
        reports = [_report(host, key, n) for n in range(30)]

        def send(batch: list[dict]) -> list[str]:
            for report in batch:
                app.send_task(INGEST_TASK, args=[report], queue=queue)
            return [r["report_id"] for r in batch]

        with psycopg.connect(private_postgres.url, autocommit=True) as conn:
            _stored(conn, send(reports[:2]), 90, log)  # the worker is up and connected
            before = _sessions(conn)
            _stored(conn, send(reports[2:22]), 60, log)
            # 20 reports, one connection: none opened for them (one per report without reuse).
            assert _sessions(conn) - before == 0
        private_postgres.ctl("restart", "-m", "fast")
        with psycopg.connect(private_postgres.url, autocommit=True) as conn:
            ids = send(reports[22:])
            _stored(conn, ids, 60, log)
            rejected = conn.execute(
                "SELECT count(*) FROM models_admin_receivedreport WHERE status <> 'accepted'"
            ).fetchone()[0]
            assert rejected == 0
            accepted = conn.execute("SELECT count(*) FROM models_admin_receivedreport").fetchone()[0]
            assert accepted == len(reports)  # nothing lost, nothing stored twice
    finally:
        stop(worker)
        with Connection(settings.CELERY_BROKER_URL) as broker:
            broker.SimpleQueue(queue).queue.delete()
