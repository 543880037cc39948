"""A real agent SIGKILLed mid-prune (or mid-purge) answers the order when it is started again, by itself.

The whole agent (main process and pool child) is killed while its prune moves files, on real
Redis. Its message stays in Redis' unacked table until the visibility timeout (hours), and
no dashboard runs here to re-send anything: so whatever answers the order after the restart
is the agent's own journal. The answer must be the truth of the disk, item by item (moved
files ``quarantined``, the rest untouched and ``error``: not done), followed by an inventory;
and the old message, when the broker does hand it back, moves nothing more.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from celery import Celery
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kombu import Connection

from workers.prune import QUARANTINE_DIR
from workers.schema import AgentTask, ErrorReport, FileIdentity, Outcome, PruneOrder, PurgeOrder, host_queue
from workers.signing.keys import public_key_text
from workers.tasks import INTERRUPTED
from workers.tests.conftest import sign_order
from workers.tests.test_worker import REDIS_URL, require_redis
from workers.tests.test_worker_lost import ROOT, START_WAIT, Agent, Ingest

pytestmark = pytest.mark.slow

# Enough files that the prune lasts a few seconds (each is hashed, checked, moved, recorded).
FILES = 2000
KILL_AFTER = 50  # items recorded when the kill lands


def launch(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def recorded(state_dir: Path, request_id: str) -> int:
    try:
        with sqlite3.connect(state_dir / "agent.sqlite3", timeout=10) as db:
            return db.execute(
                "SELECT count(*) FROM item_outcomes WHERE request_id=?", (request_id,)
            ).fetchone()[0]
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


def identity(root: Path, rel: str) -> FileIdentity:
    st = os.stat(root / rel)
    return FileIdentity(
        path=rel,
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha256=hashlib.sha256((root / rel).read_bytes()).hexdigest(),
    )


def unacked(queue: str) -> dict[str, list]:
    """Kombu's Redis unacked table, for ``queue``: delivery tag -> [message, exchange, queue]."""
    with Connection(REDIS_URL) as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
        found = {tag.decode(): json.loads(v) for tag, v in client.hgetall("unacked").items()}
    return {tag: u for tag, u in found.items() if u[2] == queue}


def agent_env(
    host: str, models_dir: Path, state_dir: Path, dashboard_key: Ed25519PrivateKey
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_"))}
    env.update(
        OCRDASH_BROKER_URL=REDIS_URL,
        OCRDASH_HOST_NAME=host,
        OCRDASH_MODELS_DIR=str(models_dir),
        OCRDASH_STATE_DIR=str(state_dir),
        OCRDASH_INGEST_QUEUE=f"ocrdash.ingest.{host}",
        OCRDASH_DASHBOARD_PUBLIC_KEY=public_key_text(dashboard_key),
        OCRDASH_HEARTBEAT_SECONDS="0",
    )
    return env


def stop(agent: Agent) -> None:
    """Stop the agent's process group and forget its queues and unacked messages."""
    try:
        os.killpg(agent.process.pid, signal.SIGTERM)
        agent.process.wait(timeout=20)
    except ProcessLookupError:
        pass
    except subprocess.TimeoutExpired:
        os.killpg(agent.process.pid, signal.SIGKILL)
        agent.process.wait(timeout=10)
    with Connection(REDIS_URL) as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]
        for tag in unacked(agent.queue):
            client.hdel("unacked", tag)
            client.zrem("unacked_index", tag)
        for name in (agent.ingest, agent.queue):
            conn.SimpleQueue(name).queue.delete()


def hand_back(queue: str) -> None:
    """The broker hands the one unacked message of ``queue`` back (its visibility timeout, now)."""
    [(tag, (message, _exchange, _queue))] = unacked(queue).items()
    with Connection(REDIS_URL) as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]
        client.hdel("unacked", tag)
        client.zrem("unacked_index", tag)
        client.lpush(queue, json.dumps(message))


def test_an_agent_killed_mid_prune_answers_it_when_started_again(
    models_dir: Path, state_dir: Path, tmp_path: Path, dashboard_key: Ed25519PrivateKey
) -> None:
    require_redis(REDIS_URL)
    host = f"test-restart-{uuid.uuid4().hex[:10]}"
    queue, ingest_queue, log = host_queue(host), f"ocrdash.ingest.{host}", tmp_path / "agent.log"
    env = agent_env(host, models_dir, state_dir, dashboard_key)
    agent = Agent(host, queue, ingest_queue, models_dir, state_dir, log, launch(env, log))
    sender = Celery("test-dashboard", broker=REDIS_URL, set_as_current=False)
    try:
        reports = Ingest(agent)
        [hello] = reports.take(1, timeout=START_WAIT)
        assert hello.kind == "inventory"
        # Made after the startup inventory: not in the hash cache, so the prune hashes each.
        names = [f"model_{i:05}.bin" for i in range(FILES)]
        for name in names:
            (models_dir / name).write_bytes(f"weights {name}".encode() * 50)
        order = PruneOrder(
            host=host, request_id=f"p-{uuid.uuid4().hex[:8]}", items=[identity(models_dir, n) for n in names]
        )
        sender.send_task(AgentTask.PRUNE.value, args=[sign_order(order, dashboard_key)], queue=queue)

        deadline = time.monotonic() + 60
        while recorded(state_dir, order.request_id) < KILL_AFTER:
            assert time.monotonic() < deadline, f"the prune did not start\n{agent.tail()}"
            time.sleep(0.005)
        os.killpg(agent.process.pid, signal.SIGKILL)
        agent.process.wait(timeout=10)
        done_at_kill = recorded(state_dir, order.request_id)
        assert KILL_AFTER <= done_at_kill < FILES, "the kill did not land mid-prune"
        assert len(unacked(queue)) == 1  # the order's message: the broker holds it for hours

        agent.process = launch(env, log)
        prune, inventory = reports.take(2, timeout=START_WAIT)

        assert prune.kind == "prune" and prune.request_id == order.request_id
        by_outcome: dict[Outcome, set[str]] = {}
        for o in prune.outcomes:
            by_outcome.setdefault(o.outcome, set()).add(o.path)
        in_quarantine = {p.name for p in (models_dir / QUARANTINE_DIR / order.request_id).iterdir()}
        still_there = {p.name for p in models_dir.iterdir() if p.name != QUARANTINE_DIR}
        # Each item once, and each said as the disk has it.
        assert len(prune.outcomes) == FILES and set(by_outcome) == {Outcome.QUARANTINED, Outcome.ERROR}
        assert by_outcome[Outcome.QUARANTINED] == in_quarantine and len(in_quarantine) >= done_at_kill
        assert by_outcome[Outcome.ERROR] == still_there
        assert {o.detail for o in prune.outcomes if o.outcome is Outcome.ERROR} == {
            f"not done: {INTERRUPTED}"
        }
        assert inventory.kind == "inventory" and inventory.request_id.startswith("startup-")
        assert {f.path for f in inventory.files} == still_there

        # Nothing but the journal answered: the order was delivered once, its message is still
        # unacked. When the broker hands it back (the visibility timeout, done here at once),
        # it is a replay of a finished order and touches nothing.
        prune_task = rf"Task {re.escape(AgentTask.PRUNE.value)}\[[^\]]+\] received"
        assert len(re.findall(prune_task, log.read_text(errors="replace"))) == 1
        hand_back(queue)
        refused = reports.one()
        assert isinstance(refused, ErrorReport) and "replayed" in refused.reason
        assert {p.name for p in models_dir.iterdir() if p.name != QUARANTINE_DIR} == still_there
    finally:
        stop(agent)


# Enough request folders that the purge lasts a while (a journal mark, then an rmtree each).
PURGE_REQUESTS = 600
PURGE_FILES = 25  # per request folder
PURGE_KILL_AFTER = 20  # folders begun when the kill lands


def purge_marks(state_dir: Path, order_id: str) -> int:
    try:
        with sqlite3.connect(state_dir / "agent.sqlite3", timeout=10) as db:
            return db.execute(
                "SELECT count(*) FROM item_outcomes WHERE kind='purge' AND path=?", (order_id,)
            ).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_an_agent_killed_mid_purge_answers_it_when_started_again(
    models_dir: Path, state_dir: Path, tmp_path: Path, dashboard_key: Ed25519PrivateKey
) -> None:
    """The whole agent SIGKILLed while its purge deletes quarantine folders: restarted, it says
    by itself which requests' folders went (with the bytes they held) and which are still in
    quarantine, deletes nothing more, and the old message handed back deletes nothing either."""
    require_redis(REDIS_URL)
    host = f"test-restart-{uuid.uuid4().hex[:10]}"
    queue, ingest_queue, log = host_queue(host), f"ocrdash.ingest.{host}", tmp_path / "agent.log"
    quarantine = models_dir / QUARANTINE_DIR
    ids = [uuid.uuid4().hex for _ in range(PURGE_REQUESTS)]
    sizes = {}
    for rid in ids:
        for i in range(PURGE_FILES):
            (quarantine / rid / "sub").mkdir(parents=True, exist_ok=True)
            (quarantine / rid / "sub" / f"m{i}.bin").write_bytes(rid.encode() * (i + 1))
        sizes[rid] = sum(len(rid) * (i + 1) for i in range(PURGE_FILES))
    (models_dir / "en.gguf").write_bytes(b"kept")
    env = agent_env(host, models_dir, state_dir, dashboard_key)
    agent = Agent(host, queue, ingest_queue, models_dir, state_dir, log, launch(env, log))
    sender = Celery("test-dashboard", broker=REDIS_URL, set_as_current=False)
    try:
        reports = Ingest(agent)
        [hello] = reports.take(1, timeout=START_WAIT)
        assert hello.kind == "inventory"
        order = PurgeOrder(
            host=host, request_id=f"g-{uuid.uuid4().hex[:8]}", retention_days=0, prune_request_ids=ids
        )
        sender.send_task(AgentTask.PURGE.value, args=[sign_order(order, dashboard_key)], queue=queue)

        deadline = time.monotonic() + 60
        while purge_marks(state_dir, order.request_id) < PURGE_KILL_AFTER:
            assert time.monotonic() < deadline, f"the purge did not start\n{agent.tail()}"
            time.sleep(0.002)
        os.killpg(agent.process.pid, signal.SIGKILL)
        agent.process.wait(timeout=10)
        gone_at_kill = {rid for rid in ids if not (quarantine / rid).exists()}
        assert PURGE_KILL_AFTER - 1 <= len(gone_at_kill) < PURGE_REQUESTS, "the kill did not land mid-purge"
        assert len(unacked(queue)) == 1

        agent.process = launch(env, log)
        purge, inventory = reports.take(2, timeout=START_WAIT)

        assert purge.kind == "purge" and purge.request_id == order.request_id
        assert purge.detail == INTERRUPTED
        still_there = {p.name for p in quarantine.iterdir()}
        gone = set(ids) - still_there
        assert gone == gone_at_kill  # the restart deleted nothing
        # Each request once: purged ones with the bytes they held, the rest still in quarantine.
        assert set(purge.purged_requests) == gone
        assert {p.request_id: p.bytes_purged for p in purge.purged} == {rid: sizes[rid] for rid in gone}
        assert all(p.files == PURGE_FILES for p in purge.purged)
        assert purge.bytes_purged == sum(sizes[rid] for rid in gone)
        kept = {k.request_id: k for k in purge.kept}
        assert set(kept) == still_there and len(purge.kept) == len(still_there)
        # A folder rmtree had begun may hold only part of its files: the report says what is left.
        for rid, left in kept.items():
            on_disk = [f for f in (quarantine / rid).rglob("*") if f.is_file()]
            assert (left.files_left, left.bytes_left) == (
                len(on_disk),
                sum(f.stat().st_size for f in on_disk),
            )
        assert inventory.kind == "inventory" and {f.path for f in inventory.files} == {"en.gguf"}

        prune_task = rf"Task {re.escape(AgentTask.PURGE.value)}\[[^\]]+\] received"
        assert len(re.findall(prune_task, log.read_text(errors="replace"))) == 1
        hand_back(queue)
        refused = reports.one()
        assert isinstance(refused, ErrorReport) and "replayed" in refused.reason
        assert {p.name for p in quarantine.iterdir()} == still_there
    finally:
        stop(agent)
