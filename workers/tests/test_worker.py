"""The real agent worker (``python -m workers agent``) on a real broker, end to end.

Redis must be running (OCRDASH_TEST_REDIS_URL, default db 15): without it these tests fail,
since a skipped round trip would look like a working one.
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from celery import Celery
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kombu import Connection

from workers.broker import filesystem_transport_options
from workers.schema import (
    INGEST_TASK,
    AgentTask,
    FileIdentity,
    PruneMode,
    PruneOrder,
    host_queue,
    parse_report,
)
from workers.signing.envelope import verify
from workers.signing.keys import load_private_key, public_key_text
from workers.tests.conftest import sign_order, write
from workers.trust import AGENT_KEY_FILE

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = os.environ.get("OCRDASH_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
WAIT = 60.0

pytestmark = pytest.mark.slow


def require_redis(url: str) -> None:
    parts = urlsplit(url)
    try:
        socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"Redis is not reachable at {url} ({exc}); start it or set OCRDASH_TEST_REDIS_URL")


@dataclass
class Broker:
    url: str
    options: dict[str, Any]
    env: dict[str, str]


@pytest.fixture(params=["redis", "filesystem"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Broker:
    if request.param == "redis":
        require_redis(REDIS_URL)
        return Broker(REDIS_URL, {}, {"OCRDASH_BROKER_URL": REDIS_URL})
    folder = tmp_path / "broker"
    return Broker(
        "filesystem://",
        filesystem_transport_options(folder),
        {"OCRDASH_BROKER_URL": "filesystem://", "OCRDASH_BROKER_FOLDER": str(folder)},
    )


@dataclass
class Running:
    host: str
    ingest: str
    models_dir: Path
    state_dir: Path
    log: Path
    process: subprocess.Popen[bytes]


@pytest.fixture
def agent(
    broker: Broker, models_dir: Path, state_dir: Path, tmp_path: Path, dashboard_key: Ed25519PrivateKey
) -> Iterator[Running]:
    run = uuid.uuid4().hex[:10]
    host, ingest = f"test-{run}", f"ocrdash.ingest.test-{run}"
    log = tmp_path / "agent.log"
    env = {
        **os.environ,
        **broker.env,
        "OCRDASH_HOST_NAME": host,
        "OCRDASH_MODELS_DIR": str(models_dir),
        "OCRDASH_STATE_DIR": str(state_dir),
        "OCRDASH_INGEST_QUEUE": ingest,
        "OCRDASH_DASHBOARD_PUBLIC_KEY": public_key_text(dashboard_key),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        yield Running(host, ingest, models_dir, state_dir, log, process)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if broker.url.startswith("redis"):
            with Connection(broker.url) as conn:
                for queue in (ingest, host_queue(host)):
                    conn.SimpleQueue(queue).queue.delete()


def reports(
    broker: Broker, running: Running, count: int, request_id: str | None = None, *, heartbeats: bool = False
) -> list[Any]:
    """The next ``count`` reports on the ingest queue (for ``request_id``, if given; heartbeats
    only when asked). Live progress is left out: how many an order sends depends on its pace."""
    found: list[Any] = []
    deadline = time.monotonic() + WAIT
    with Connection(broker.url, transport_options=broker.options) as conn:
        queue = conn.SimpleQueue(running.ingest)
        try:
            while len(found) < count:
                left = deadline - time.monotonic()
                if left <= 0 or running.process.poll() is not None:
                    pytest.fail(
                        f"got {len(found)} of {count} reports; agent log:\n{running.log.read_text()[-4000:]}"
                    )
                try:
                    message = queue.get(block=True, timeout=min(left, 2))
                except queue.Empty:
                    continue
                assert message.headers["task"] == INGEST_TASK
                args, _kwargs, _embed = message.decode()
                message.ack()
                # Every report is signed with the key the agent made in its state folder.
                agent_key = load_private_key(running.state_dir / AGENT_KEY_FILE).public_key()
                verified = verify(
                    args[0], agent_key, expected_signer=running.host, expected_purpose=INGEST_TASK
                )
                report = parse_report(verified.body)
                if report.kind == "heartbeat" and not heartbeats:
                    continue  # the agent's presence beats are tested on their own
                if report.kind == "progress":
                    continue
                if request_id is None or report.request_id == request_id:
                    found.append(report)
        finally:
            queue.close()
    return found


def test_prune_round_trip_replay_and_resend(
    broker: Broker, agent: Running, dashboard_key: Ed25519PrivateKey
) -> None:
    write(agent.models_dir / "en_ocr_v1.gguf", b"en")
    old = write(agent.models_dir / "old_fr_ocr_v1.bin", b"fr")
    # The agent announces itself with a fresh inventory when it starts.
    [hello] = reports(broker, agent, 1)
    assert hello.kind == "inventory" and hello.host == agent.host
    assert {f.path for f in hello.files} == {"en_ocr_v1.gguf", "old_fr_ocr_v1.bin"}

    st = old.stat()
    item = FileIdentity(
        path="old_fr_ocr_v1.bin",
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=hashlib.sha256(b"fr").hexdigest(),
    )
    order = PruneOrder(
        host=agent.host, request_id=f"r-{uuid.uuid4().hex[:8]}", mode=PruneMode.DELETE, items=[item]
    )
    sender = Celery("test-sender", broker=broker.url, set_as_current=False)
    sender.conf.update(broker_transport_options=broker.options, task_serializer="json")
    message = sign_order(order, dashboard_key)
    for _ in range(2):  # the same signed message delivered twice
        sender.send_task(AgentTask.PRUNE.value, args=[message], queue=host_queue(agent.host))

    # A prune is answered by its outcomes and a fresh inventory; the replay by one refusal.
    first = reports(broker, agent, 3)
    got = [r for r in first if r.request_id == order.request_id]
    # The second delivery is a replay: refused, naming no request (so it fails nothing).
    [replay] = [r for r in first if r.request_id is None]
    assert replay.kind == "error" and "replayed" in replay.reason and replay.request_id is None
    # The dashboard's re-send is signed afresh: answered with the first run's reports, unchanged.
    sender.send_task(
        AgentTask.PRUNE.value, args=[sign_order(order, dashboard_key)], queue=host_queue(agent.host)
    )
    again = reports(broker, agent, 2, order.request_id)
    unique = {r.report_id: r for r in got}
    assert len(unique) == 2
    # sent_at is set when a copy is sent; everything else is the first run's report.
    strip = lambda r: r.model_dump(exclude={"sent_at"})  # noqa: E731
    assert sorted(map(strip, again), key=lambda d: d["report_id"]) == sorted(
        map(strip, got), key=lambda d: d["report_id"]
    )
    [prune] = [r for r in unique.values() if r.kind == "prune"]
    inventories = [r for r in unique.values() if r.kind == "inventory"]
    assert prune.freed and [(o.path, o.outcome.value) for o in prune.outcomes] == [
        ("old_fr_ocr_v1.bin", "deleted")
    ]
    assert [len(r.files) for r in inventories] == [1]
    assert not old.exists()
    assert (agent.models_dir / "en_ocr_v1.gguf").exists()


def test_malformed_order_is_reported_not_retried(
    broker: Broker, agent: Running, dashboard_key: Ed25519PrivateKey
) -> None:
    reports(broker, agent, 1)  # startup inventory
    sender = Celery("test-sender", broker=broker.url, set_as_current=False)
    sender.conf.update(broker_transport_options=broker.options, task_serializer="json")
    sender.send_task(
        AgentTask.PRUNE.value,
        args=[
            sign_order(
                {"schema_version": 2, "host": agent.host, "request_id": "bad-1", "kind": "prune"},
                dashboard_key,
            )
        ],
        queue=host_queue(agent.host),
    )
    [error] = reports(broker, agent, 1, "bad-1")
    assert error.kind == "error" and "malformed" in error.reason
    assert agent.process.poll() is None
