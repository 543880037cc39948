"""The ingest worker keeps one PostgreSQL connection across reports and gets a fresh one after
the database restarts.

A private PostgreSQL server (initdb into a temporary folder, its own port) so the restart hurts
nobody else; a real ``celery -A ocrdash worker`` with the production settings on it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
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

from .processes import ROOT, start, stop

pytestmark = pytest.mark.slow
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(argv: list[str]) -> list[str]:
    # initdb refuses to run as root; the server's files then belong to the postgres user.
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


class PrivatePostgres:
    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, _free_port()
        self.data, self.log = folder / "data", folder / "server.log"
        self.url = f"postgres://postgres@127.0.0.1:{self.port}/ocrdash"

    def ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        argv = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", *args]
        subprocess.run(_as_postgres(argv), check=True, capture_output=True)

    def create(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.folder, "postgres")
        subprocess.run(
            _as_postgres([str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust"]),
            check=True,
            capture_output=True,
        )
        self.ctl("start")
        with psycopg.connect(f"postgres://postgres@127.0.0.1:{self.port}/postgres", autocommit=True) as conn:
            conn.execute("CREATE DATABASE ocrdash")


@pytest.fixture
def private_postgres() -> Iterator[PrivatePostgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.skip("needs PostgreSQL 15's initdb to start a private server")
    # Not under pytest's tmp folder: the postgres user must be able to reach it.
    server = PrivatePostgres(Path(tempfile.mkdtemp(prefix="ocrdash-pg-")))
    try:
        server.create()
        yield server
    finally:
        if (server.data / "postmaster.pid").exists():
            server.ctl("stop", "-m", "immediate")
        shutil.rmtree(server.folder, ignore_errors=True)


def _env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_", "DJANGO_"))}
    env.update(
        DJANGO_SETTINGS_MODULE="ocrdash.settings",
        DJANGO_SECRET_KEY=settings.SECRET_KEY,
        DATABASE_URL=database_url,
        CELERY_BROKER_URL=settings.CELERY_BROKER_URL,
        OCRDASH_SIGNING_KEY_FILE=str(settings.OCRDASH_SIGNING_KEY_FILE),
    )
    return env


SETUP = """
import django, sys
django.setup()
from django.core.management import call_command
call_command("migrate", verbosity=0)
from models_admin.models import Host, HostKey
host = Host.objects.create(name=sys.argv[1], status=Host.Status.ACTIVE)
HostKey.objects.create(host=host, public_key=sys.argv[2], fingerprint=sys.argv[3])
"""


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
    from workers.signing.keys import key_fingerprint, public_key_text

    host, key = "reuse-1", Ed25519PrivateKey.generate()
    env = _env(private_postgres.url)
    subprocess.run(
        [sys.executable, "-c", SETUP, host, public_key_text(key), key_fingerprint(key)],
        cwd=ROOT,
        env=env,
        check=True,
    )
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
