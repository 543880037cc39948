"""The whole loop with real processes: a real agent worker and a real ingest worker on the
real broker, the dashboard's workflow in between, and a file that really moves on disk.

The ingest worker is a separate ``celery -A ocrdash worker`` process, so it must see what this
test commits: the test runs with ``transaction=True`` (nothing is hidden in a test
transaction) and the worker is pointed at this run's test database. Both workers use queues
unique to this run, so other test runs on the same Redis neither steal nor feed them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection

from models_admin import policies, trust, workflow
from models_admin.models import AuditEvent, Host, PruneRequest
from workers.prune import QUARANTINE_DIR
from workers.schema import host_queue

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True, serialized_rollback=True)]
ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0  # the agent's first start loads Aspose's bundled runtime
A = AuditEvent.Action


def wait_for(what: str, check: Callable[[], Any], logs: list[Path], timeout: float = WAIT) -> Any:
    """Poll until check() returns something truthy; fail with the workers' logs otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def test_database_url() -> str:
    """This run's test database, as a URL for settings_test in another process."""
    db = connection.settings_dict
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(args, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def loop(tmp_path: Path) -> Iterator[dict[str, Any]]:
    if connection.vendor != "postgresql":
        pytest.skip("the ingest worker process needs a database server it can share with the test")
    run = uuid.uuid4().hex[:10]
    host, ingest_queue = f"loop-{run}", f"ocrdash.ingest.loop-{run}"
    models = tmp_path / "models"
    models.mkdir()
    (models / "en_ocr_v1.gguf").write_bytes(b"english model v1")
    (models / "old_fr_ocr_v1.bin").write_bytes(b"old french model")
    broker = settings.CELERY_BROKER_URL
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "DJANGO_"))}
    ingest_log, agent_log = tmp_path / "ingest.log", tmp_path / "agent.log"
    # The host joins as an installer would set it up: the dashboard's key pinned, a token.
    _row, token = trust.create_token("installer", label="loop test", host_name=host)
    ingest = start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "ocrdash",
            "worker",
            "--queues",
            ingest_queue,
            "--pool",
            "solo",
            "--hostname",
            f"ingest-{run}@localhost",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "--loglevel",
            "INFO",
        ],
        {
            **base_env,
            "DJANGO_SETTINGS_MODULE": "ocrdash.settings_test",
            "OCRDASH_TEST_DATABASE_URL": test_database_url(),
            "OCRDASH_TEST_BROKER_URL": broker,
        },
        ingest_log,
    )
    agent = start(
        [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"],
        {
            **base_env,
            "OCRDASH_BROKER_URL": broker,
            "OCRDASH_HOST_NAME": host,
            "OCRDASH_MODELS_DIR": str(models),
            "OCRDASH_STATE_DIR": str(tmp_path / "state"),
            "OCRDASH_INGEST_QUEUE": ingest_queue,
            "OCRDASH_DASHBOARD_PUBLIC_KEY": trust.dashboard_public_key(),
            "OCRDASH_ENROLLMENT_TOKEN": token,
        },
        agent_log,
    )
    try:
        yield {"host": host, "models": models, "logs": [ingest_log, agent_log]}
    finally:
        stop(agent)
        stop(ingest)
        with Connection(broker) as conn:
            for queue in (ingest_queue, host_queue(host)):
                conn.SimpleQueue(queue).queue.delete()


def test_report_propose_approve_prune_and_report_back(loop, operator, approver, approver2):
    name, models, logs = loop["host"], loop["models"], loop["logs"]

    # 1. The agent announces itself; ingest registers a pending host with its snapshot.
    host = wait_for(
        "the first inventory",
        lambda: Host.objects.filter(name=name, current_snapshot__isnull=False).first(),
        logs,
    )
    assert host.status == Host.Status.PENDING
    assert host.active_key is not None  # enrolled with the token on its first report
    assert set(host.current_snapshot.files.values_list("path", flat=True)) == {
        "en_ocr_v1.gguf",
        "old_fr_ocr_v1.bin",
    }
    first_snapshot = host.current_snapshot_id
    host = workflow.accept_host(host, approver)

    # 2. The tutorial's rule proposes the old_ model; its proposer may not approve it.
    run = policies.run_policy(host, "prefix", user=approver2, reason="tutorial cleanup")
    request = run.request
    assert [i.path for i in request.items.all()] == ["old_fr_ocr_v1.bin"]
    with pytest.raises(workflow.NotAllowed):
        workflow.approve(request.id, approver2)

    # 3. A second person approves; the order goes out when the approval commits.
    workflow.approve(request.id, approver, "ok")

    # 4. The agent quarantines the file and reports outcomes and a fresh inventory.
    request = wait_for(
        "the request to finish",
        lambda: PruneRequest.objects.filter(id=request.id, finished_at__isnull=False).first(),
        logs,
    )
    assert request.state == PruneRequest.State.COMPLETED, request.items.values("path", "outcome", "detail")
    item = request.items.get()
    assert item.outcome == "quarantined" and item.bytes_reclaimed == len(b"old french model")
    assert not (models / "old_fr_ocr_v1.bin").exists()
    assert (
        models / QUARANTINE_DIR / request.id.hex / "old_fr_ocr_v1.bin"
    ).read_bytes() == b"old french model"
    assert (models / "en_ocr_v1.gguf").exists()

    host = wait_for(
        "the inventory after pruning",
        lambda: Host.objects.filter(name=name).exclude(current_snapshot_id=first_snapshot).first(),
        logs,
    )
    assert list(host.current_snapshot.files.values_list("path", flat=True)) == ["en_ocr_v1.gguf"]

    # 5. Every step is in the audit trail, with who did it.
    trail = set(AuditEvent.objects.filter(host=name).values_list("action", "actor"))
    agent = f"agent:{name}"
    for expected in [
        (A.HOST_REGISTERED, agent),
        (A.HOST_ENROLLED, agent),
        (A.REPORT_INGESTED, agent),
        (A.HOST_ACCEPTED, approver.username),
        (A.REQUEST_PROPOSED, approver2.username),
        (A.REQUEST_APPROVED, approver.username),
        (A.REQUEST_DISPATCHED, "system"),
        (A.ITEM_OUTCOME, agent),
        (A.REQUEST_FINISHED, agent),
    ]:
        assert expected in trail, expected
    assert (A.REQUEST_APPROVED, approver2.username) not in trail
