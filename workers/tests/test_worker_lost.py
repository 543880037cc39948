"""A pool child SIGKILLed mid-order, on the real agent worker and real Redis.

What these tests pin down (late acks + reject_on_worker_lost, prefork, concurrency 1):

- The message is not lost: the main worker rejects it with requeue when its child dies, and
  Redis delivers the very same message again at once.
- That redelivery carries on: its nonce was claimed by the killed run, but the run never
  finished, so it is the broker handing the order back, not a replay. It counts as the next
  attempt and the order completes without waiting for the dashboard's re-send.
- An order whose runs keep killing the worker is given up after OCRDASH_MAX_ATTEMPTS starts
  ("gave up after N attempts"), and that message is acked: nothing is delivered again.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
from celery import Celery
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kombu import Connection

from workers.schema import INGEST_TASK, AgentTask, ErrorReport, InventoryOrder, host_queue, parse_report
from workers.signing.envelope import SIGNATURE_FIELD, verify
from workers.signing.keys import load_private_key, public_key_text
from workers.tests.conftest import sign_order
from workers.tests.test_worker import REDIS_URL, require_redis
from workers.trust import AGENT_KEY_FILE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
MAX_ATTEMPTS = 2
# Enough small files that an uncached scan lasts a few seconds (each file costs the hash
# cache two sqlite round trips): the kill lands mid-run without racing the scan's end.
FILES = 3000
START_WAIT = 90.0  # the agent's first start loads Aspose's bundled runtime
WAIT = 30.0
# How long an acked order must stay quiet to count as not redelivered. A rejected message
# comes back within milliseconds, so this bounds the wait without hiding a redelivery.
QUIET = 5.0
T = TypeVar("T")


@dataclass
class Agent:
    host: str
    queue: str
    ingest: str
    models_dir: Path
    state_dir: Path
    log: Path
    process: subprocess.Popen[bytes]

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def wait_for(what: str, check: Callable[[], T], agent: Agent, timeout: float = WAIT) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        if agent.process.poll() is not None:
            break
        time.sleep(0.005)
    pytest.fail(f"timed out waiting for {what}; agent log:\n{agent.tail()}")


@pytest.fixture
def agent(
    models_dir: Path, state_dir: Path, tmp_path: Path, dashboard_key: Ed25519PrivateKey
) -> Iterator[Agent]:
    require_redis(REDIS_URL)
    host = f"test-lost-{uuid.uuid4().hex[:10]}"
    ingest = f"ocrdash.ingest.{host}"
    log = tmp_path / "agent.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_"))}
    env.update(
        OCRDASH_BROKER_URL=REDIS_URL,
        OCRDASH_HOST_NAME=host,
        OCRDASH_MODELS_DIR=str(models_dir),
        OCRDASH_STATE_DIR=str(state_dir),
        OCRDASH_INGEST_QUEUE=ingest,
        OCRDASH_DASHBOARD_PUBLIC_KEY=public_key_text(dashboard_key),
        OCRDASH_MAX_ATTEMPTS=str(MAX_ATTEMPTS),
        # These tests count every report (and want silence between orders): no presence beats.
        OCRDASH_HEARTBEAT_SECONDS="0",
    )
    with log.open("wb") as out:
        # Own process group: the final kill also reaches a pool child the main process left behind.
        process = subprocess.Popen(
            [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield Agent(host, host_queue(host), ingest, models_dir, state_dir, log, process)
    finally:
        try:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        with Connection(REDIS_URL) as conn:
            for queue in (ingest, host_queue(host)):
                conn.SimpleQueue(queue).queue.delete()


def pool_children(pid: int) -> list[int]:
    """The live children of ``pid``, read from /proc (its threads each list the ones they forked)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return sorted(found)


def run_row(agent: Agent, request_id: str) -> tuple[int, bool] | None:
    """The state db's (attempts, finished) for an inventory request, or None before its first start."""
    path = agent.state_dir / "agent.sqlite3"
    if not path.exists():
        return None
    with sqlite3.connect(path, timeout=10) as db:
        row = db.execute(
            "SELECT attempts, reports IS NOT NULL FROM runs WHERE task=? AND request_id=?",
            (AgentTask.INVENTORY.value, request_id),
        ).fetchone()
    return (row[0], bool(row[1])) if row else None


def kill_mid_run(agent: Agent, request_id: str, attempt: int) -> None:
    """SIGKILL the pool child once it has counted ``attempt`` and before its run finishes."""
    wait_for(
        f"attempt {attempt} of {request_id} to start",
        lambda: run_row(agent, request_id) == (attempt, False),
        agent,
    )
    [child] = pool_children(agent.process.pid)
    assert child != agent.process.pid
    os.kill(child, signal.SIGKILL)
    # The main worker reaps it and forks a fresh child for the redelivery.
    wait_for("a fresh pool child", lambda: pool_children(agent.process.pid) not in ([], [child]), agent)
    assert run_row(agent, request_id) != (attempt, True), "the run finished before the kill"
    assert agent.process.poll() is None


class Ingest:
    """The reports the agent puts on its (test-only) ingest queue, signature checked."""

    def __init__(self, agent: Agent) -> None:
        self.agent = agent

    def take(self, count: int, timeout: float = WAIT) -> list[Any]:
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        with Connection(REDIS_URL) as conn:
            queue = conn.SimpleQueue(self.agent.ingest)
            try:
                while len(found) < count:
                    left = deadline - time.monotonic()
                    if left <= 0 or self.agent.process.poll() is not None:
                        pytest.fail(f"got {found} of {count} reports; agent log:\n{self.agent.tail()}")
                    try:
                        message = queue.get(block=True, timeout=min(left, 1))
                    except queue.Empty:
                        continue
                    assert message.headers["task"] == INGEST_TASK
                    args, _kwargs, _embed = message.decode()
                    message.ack()
                    key = load_private_key(self.agent.state_dir / AGENT_KEY_FILE).public_key()
                    verified = verify(
                        args[0], key, expected_signer=self.agent.host, expected_purpose=INGEST_TASK
                    )
                    report = parse_report(verified.body)
                    if report.kind != "progress":  # progress of long work is not an answer
                        found.append(report)
            finally:
                queue.close()
        return found

    def one(self) -> Any:
        [report] = self.take(1)
        return report

    def quiet(self, seconds: float) -> None:
        """Fail if any report but progress arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        with Connection(REDIS_URL) as conn:
            queue = conn.SimpleQueue(self.agent.ingest)
            try:
                while (left := deadline - time.monotonic()) > 0:
                    try:
                        message = queue.get(block=True, timeout=left)
                    except queue.Empty:
                        return
                    message.ack()
                    args, _kwargs, _embed = message.decode()
                    if args[0].get("kind") != "progress":
                        pytest.fail(f"unexpected report {args[0]}; agent log:\n{self.agent.tail()}")
            finally:
                queue.close()


@dataclass
class Dashboard:
    """Sends orders as the dashboard does: each (re-)send signed afresh, with a new nonce."""

    agent: Agent
    key: Ed25519PrivateKey
    sender: Celery

    def send(self, order: InventoryOrder) -> str:
        message = sign_order(order, self.key)
        self.sender.send_task(AgentTask.INVENTORY.value, args=[message], queue=self.agent.queue)
        return message[SIGNATURE_FIELD]["nonce"]


@pytest.fixture
def dashboard(agent: Agent, dashboard_key: Ed25519PrivateKey) -> Dashboard:
    sender = Celery("test-dashboard", broker=REDIS_URL, set_as_current=False)
    sender.conf.update(task_serializer="json")
    return Dashboard(agent, dashboard_key, sender)


@pytest.fixture
def ready(agent: Agent) -> Ingest:
    """The agent has started and announced itself; then the model folder is filled.

    Filled only afterwards, so the startup inventory does not warm the hash cache and the
    order's scan is slow enough to be killed in.
    """
    ingest = Ingest(agent)
    [hello] = ingest.take(1, timeout=START_WAIT)
    assert hello.kind == "inventory" and hello.request_id.startswith("startup-")
    for i in range(FILES):
        (agent.models_dir / f"model_{i:05}.bin").write_bytes(f"weights {i}".encode())
    return ingest


def assert_replay_refused(report: Any, nonce: str) -> None:
    """The redelivered message, refused by the replay guard: it names the nonce, not the request."""
    assert isinstance(report, ErrorReport), report
    assert report.request_id is None
    assert "replayed" in report.reason and nonce[:32] in report.reason


def received(agent: Agent) -> int:
    """How many deliveries the worker logged (Celery logs one line per received message)."""
    pattern = rf"Task {re.escape(AgentTask.INVENTORY.value)}\[[^\]]+\] received"
    return len(re.findall(pattern, agent.log.read_text(errors="replace")))


def test_a_killed_run_is_redelivered_and_completes(agent: Agent, ready: Ingest, dashboard: Dashboard) -> None:
    order = InventoryOrder(host=agent.host, request_id=f"inv-{uuid.uuid4().hex[:8]}")
    dashboard.send(order)
    kill_mid_run(agent, order.request_id, attempt=1)

    # Not lost, and not refused as a replay: the redelivery is the next attempt, run for real.
    report = ready.one()
    assert report.kind == "inventory" and report.request_id == order.request_id
    assert len(report.files) == FILES and all(f.sha256 for f in report.files)
    assert run_row(agent, order.request_id) == (2, True)


def test_a_finished_order_sent_again_as_the_same_message_is_a_replay(
    agent: Agent, ready: Ingest, dashboard: Dashboard
) -> None:
    order = InventoryOrder(host=agent.host, request_id=f"inv-{uuid.uuid4().hex[:8]}")
    message = sign_order(order, dashboard.key)
    for _ in range(2):
        dashboard.sender.send_task(AgentTask.INVENTORY.value, args=[message], queue=agent.queue)
    first, second = ready.take(2)
    assert first.kind == "inventory" and first.request_id == order.request_id
    assert_replay_refused(second, message[SIGNATURE_FIELD]["nonce"])


def test_an_order_that_keeps_killing_its_worker_is_given_up_and_acked(
    agent: Agent, ready: Ingest, dashboard: Dashboard
) -> None:
    order = InventoryOrder(host=agent.host, request_id=f"inv-{uuid.uuid4().hex[:8]}")
    dashboard.send(order)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        kill_mid_run(agent, order.request_id, attempt)

    # The broker hands the message back once more: one start too many, given up.
    gave_up = ready.one()
    assert isinstance(gave_up, ErrorReport) and gave_up.request_id == order.request_id
    assert gave_up.reason == f"gave up after {MAX_ATTEMPTS} attempts"
    assert run_row(agent, order.request_id) == (MAX_ATTEMPTS + 1, True)

    # Acked: nothing waits on the queue or in Redis' unacked table, and nothing comes back.
    deliveries = received(agent)
    ready.quiet(QUIET)
    assert received(agent) == deliveries
    with Connection(REDIS_URL) as conn:
        client = conn.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
        assert client.llen(agent.queue) == 0
        unacked = [json.loads(v) for v in client.hvals("unacked")]
        assert not [u for u in unacked if u[2] == agent.queue]
    # The startup inventory, then the one send and one redelivery per killed start.
    assert deliveries == 1 + 1 + MAX_ATTEMPTS
    assert agent.process.poll() is None


def prune_progress(agent: Agent, request_id: str) -> tuple[int, int]:
    """(attempts counted, items recorded) of a prune run, from the agent's state database."""
    path = agent.state_dir / "agent.sqlite3"
    if not path.exists():
        return 0, 0
    with sqlite3.connect(path, timeout=10) as db:
        row = db.execute(
            "SELECT attempts FROM runs WHERE task=? AND request_id=?", (AgentTask.PRUNE.value, request_id)
        ).fetchone()
        done = db.execute("SELECT count(*) FROM item_outcomes WHERE request_id=?", (request_id,)).fetchone()
    return (row[0] if row else 0), done[0]


def test_a_prune_that_keeps_killing_its_worker_is_given_up_item_by_item(
    agent: Agent, ready: Ingest, dashboard_key: Ed25519PrivateKey
) -> None:
    """Issue case 2 with real processes: the pool child SIGKILLed mid-prune at every start.
    The given-up answer says what each file became (the moved ones ``quarantined``, the rest
    not done), never an error alone that would hide files sitting in quarantine."""
    from workers.prune import QUARANTINE_DIR
    from workers.schema import FileIdentity, Outcome, PruneOrder, PruneReport

    names = sorted(p.name for p in agent.models_dir.iterdir() if p.is_file())
    items = []
    for name in names:
        st = os.stat(agent.models_dir / name)
        digest = hashlib.sha256((agent.models_dir / name).read_bytes()).hexdigest()
        items.append(FileIdentity(path=name, size=st.st_size, mtime_ns=st.st_mtime_ns, sha256=digest))
    order = PruneOrder(host=agent.host, request_id=f"p-{uuid.uuid4().hex[:8]}", items=items)
    sender = Celery("test-dashboard", broker=REDIS_URL, set_as_current=False)
    sender.send_task(AgentTask.PRUNE.value, args=[sign_order(order, dashboard_key)], queue=agent.queue)

    recorded = 0
    for attempt in range(1, MAX_ATTEMPTS + 1):
        floor = recorded + 20

        def moved_some(attempt: int = attempt, floor: int = floor) -> bool:
            started, done = prune_progress(agent, order.request_id)
            return started == attempt and done >= floor

        wait_for(f"attempt {attempt} to move some files", moved_some, agent)
        [child] = pool_children(agent.process.pid)
        os.kill(child, signal.SIGKILL)

        def forked_again(child: int = child) -> bool:
            return pool_children(agent.process.pid) not in ([], [child])

        wait_for("a fresh pool child", forked_again, agent)
        recorded = prune_progress(agent, order.request_id)[1]
        assert recorded < len(items), "the prune finished before the kill"

    report, inventory = ready.take(2)
    assert isinstance(report, PruneReport) and report.request_id == order.request_id
    in_quarantine = {p.name for p in (agent.models_dir / QUARANTINE_DIR / order.request_id).iterdir()}
    still_there = {p.name for p in agent.models_dir.iterdir() if p.name != QUARANTINE_DIR}
    by_outcome: dict[Outcome, set[str]] = {}
    for o in report.outcomes:
        by_outcome.setdefault(o.outcome, set()).add(o.path)
    assert len(report.outcomes) == len(items)
    assert by_outcome[Outcome.QUARANTINED] == in_quarantine and len(in_quarantine) >= recorded
    assert by_outcome.get(Outcome.ERROR, set()) == still_there and still_there
    assert {o.detail for o in report.outcomes if o.outcome is Outcome.ERROR} == {
        f"not done: gave up after {MAX_ATTEMPTS} attempts"
    }
    assert inventory.kind == "inventory" and {f.path for f in inventory.files} == still_there
