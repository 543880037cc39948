"""Ingest takes reports in batches through a real worker, and a worker killed mid-batch loses
nothing and stores nothing twice.

A private PostgreSQL server and a real ``celery -A ocrdash worker`` (production settings) on
the real broker, as in test_db_reuse.py. Every report is a new inventory (one file of its own),
so "stored twice" would show as a second snapshot, a second ReceivedReport row or a second
REPORT_INGESTED event.
"""

from __future__ import annotations

import os
import re
import signal
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
from workers.schema import INGEST_TASK, FileEntry, HostFacts, InventoryReport, ModelDirState
from workers.signing.envelope import sign

from .private_postgres import PrivatePostgres, dashboard_env, enroll_host, private_postgres_server
from .processes import start, stop

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    """One server for the module (initdb and migrations once); each test counts its own host."""
    with private_postgres_server() as server:
        yield server


def _inventory(host: str, key: Ed25519PrivateKey, n: int, files: int) -> dict:
    facts = HostFacts(hostname=host, model_dir="/srv/models", model_dir_state=ModelDirState.OK, disk_free=n)
    entries = [
        FileEntry(path=f"m{n}/f{i}.gguf", size=1000 + i, mtime_ns=n, sha256=f"{n:032x}{i:032x}")
        for i in range(files)
    ]
    body = InventoryReport(host=host, facts=facts, files=entries).to_json()
    body["sent_at"] = timezone.now().isoformat()
    return sign(body, key, signer=host, purpose=INGEST_TASK)


def _worker(env: dict[str, str], queue: str, log: Path, processes: int):
    return start(
        [
            *(sys.executable, "-m", "celery", "-A", "ocrdash", "worker", "-Q", queue, "-c", str(processes)),
            *("-n", f"{uuid.uuid4().hex[:8]}@localhost", "--without-gossip", "--without-mingle"),
            *("--without-heartbeat", "-l", "INFO"),
        ],
        env,
        log,
    )


def _counts(url: str, host: str) -> dict[str, int]:
    with psycopg.connect(url, autocommit=True) as conn:

        def one(sql: str) -> int:
            row = conn.execute(sql, [host]).fetchone()
            return int(row[0]) if row else 0

        reports = "FROM models_admin_receivedreport WHERE host_name = %s"
        return {
            "accepted": one(f"SELECT count(*) {reports} AND status = 'accepted'"),
            "reports": one(f"SELECT count(*) {reports}"),
            "distinct": one(f"SELECT count(DISTINCT report_id) {reports}"),
            "snapshots": one(
                "SELECT count(*) FROM models_admin_snapshot s JOIN models_admin_host h ON h.id = s.host_id"
                " WHERE h.name = %s"
            ),
            "events": one(
                "SELECT count(*) FROM models_admin_auditevent WHERE action = 'report_ingested' AND host = %s"
            ),
        }


def _wait_accepted(url: str, host: str, wanted: int, timeout: float, logs: list[Path]) -> dict[str, int]:
    deadline = time.monotonic() + timeout
    counts = _counts(url, host)
    while time.monotonic() < deadline and counts["accepted"] < wanted:
        time.sleep(0.3)
        counts = _counts(url, host)
    if counts["accepted"] < wanted:
        tails = "\n".join(log.read_text(errors="replace")[-3000:] for log in logs)
        pytest.fail(f"{counts['accepted']} of {wanted} reports stored\n{tails}")
    return counts


def _assert_each_stored_once(url: str, host: str, total: int, logs: list[Path]) -> None:
    """Every report accepted, and nothing of it twice: one row, one snapshot, one event each."""
    _wait_accepted(url, host, total, 120, logs)
    time.sleep(2)  # anything stored twice would show up by now
    once = dict.fromkeys(("accepted", "reports", "distinct", "snapshots", "events"), total)
    assert _counts(url, host) == once


def _send(reports: list[dict], queue: str) -> None:
    with app.producer_or_acquire() as producer:
        for report in reports:
            app.send_task(INGEST_TASK, args=[report], queue=queue, producer=producer)


def _delete(queue: str) -> None:
    with Connection(settings.CELERY_BROKER_URL) as broker:
        broker.SimpleQueue(queue).queue.delete()


def test_reports_are_taken_in_batches_each_stored_once(private_postgres, tmp_path):
    host, key = f"batch-{uuid.uuid4().hex[:6]}", Ed25519PrivateKey.generate()
    env = dashboard_env(private_postgres.url, OCRDASH_INGEST_BATCH="10", OCRDASH_INGEST_BATCH_SECONDS="1")
    enroll_host(env, host, key)
    queue, log = f"ocrdash.ingest.batch-{uuid.uuid4().hex[:8]}", tmp_path / "worker.log"
    # Queued before the worker starts: it finds 60 waiting and takes them 10 at a time.
    _send([_inventory(host, key, n, files=5) for n in range(60)], queue)
    worker = _worker(env, queue, log, processes=2)
    try:
        _assert_each_stored_once(private_postgres.url, host, 60, [log])
        sizes = [int(n) for n in re.findall(r"ingested a batch of (\d+) reports", log.read_text())]
        assert sum(sizes) == 60 and max(sizes) == 10, sizes
    finally:
        stop(worker)
        _delete(queue)


def test_a_worker_killed_mid_batch_loses_nothing_and_stores_nothing_twice(private_postgres, tmp_path):
    host, key = f"kill-{uuid.uuid4().hex[:6]}", Ed25519PrivateKey.generate()
    # A short visibility timeout: the second worker takes back what the killed one held unacked
    # within seconds (in production, 4 hours: longer than the slowest task).
    env = dashboard_env(
        private_postgres.url,
        OCRDASH_INGEST_BATCH="20",
        OCRDASH_INGEST_BATCH_SECONDS="1",
        OCRDASH_BROKER_VISIBILITY_TIMEOUT="5",
    )
    enroll_host(env, host, key)
    queue = f"ocrdash.ingest.kill-{uuid.uuid4().hex[:8]}"
    first_log, second_log = tmp_path / "first.log", tmp_path / "second.log"
    total = 40
    # 3,000 files each: a batch of 20 takes seconds, so the kill lands inside one.
    _send([_inventory(host, key, n, files=3000) for n in range(total)], queue)
    first = _worker(env, queue, first_log, processes=1)
    second = None
    try:
        _wait_accepted(private_postgres.url, host, 1, 90, [first_log])
        os.killpg(first.pid, signal.SIGKILL)  # no warm shutdown: nothing is acked or put back
        first.wait(timeout=10)
        at_kill = _counts(private_postgres.url, host)
        assert 0 < at_kill["accepted"] < total, at_kill  # killed with reports still to do

        second = _worker(env, queue, second_log, processes=1)
        _assert_each_stored_once(private_postgres.url, host, total, [first_log, second_log])
        # The second worker got back reports the first had already stored, and took them as
        # duplicates: proof that the kill came mid-batch, after some of it was committed.
        assert re.search(r"ingested a batch of \d+ reports: .*\d+ duplicate", second_log.read_text())
    finally:
        if second is not None:
            stop(second)
        _delete(queue)


def test_a_pool_process_killed_mid_batch_puts_its_batch_back(private_postgres, tmp_path):
    """The worker lives on and forks a new pool process; the lost batch is redelivered at once
    (rejected back onto the queue), not left unacked until the worker restarts."""
    host, key = f"lost-{uuid.uuid4().hex[:6]}", Ed25519PrivateKey.generate()
    env = dashboard_env(private_postgres.url, OCRDASH_INGEST_BATCH="20", OCRDASH_INGEST_BATCH_SECONDS="1")
    enroll_host(env, host, key)
    queue, log = f"ocrdash.ingest.lost-{uuid.uuid4().hex[:8]}", tmp_path / "worker.log"
    total = 40
    _send([_inventory(host, key, n, files=3000) for n in range(total)], queue)
    worker = _worker(env, queue, log, processes=1)
    try:
        _wait_accepted(private_postgres.url, host, 1, 90, [log])
        children = Path(f"/proc/{worker.pid}/task/{worker.pid}/children").read_text().split()
        assert len(children) == 1, children  # the one pool process, busy with a batch
        os.kill(int(children[0]), signal.SIGKILL)
        assert _counts(private_postgres.url, host)["accepted"] < total

        _assert_each_stored_once(private_postgres.url, host, total, [log])
        text = log.read_text()
        assert "not finished" in text and "putting it back" in text
        assert re.search(r"ingested a batch of \d+ reports: .*\d+ duplicate", text)
    finally:
        stop(worker)
        _delete(queue)
