"""Reports survive the broker going away: a private redis-server stopped and started, the agent SIGKILLed.

The real agent worker runs against a Redis server of this test's own (never the shared one).
Its pool child is paused while an order is handed to it, the server is stopped, and the child
resumed: the order finishes with no broker to take its reports, so they wait in the outbox
of the state database. Then either the server comes back while the agent runs (the outbox
sender delivers them) or the agent is SIGKILLed first and started again after the server is
back (the new worker delivers what the old one left).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from celery import Celery
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from kombu import Connection

from workers.schema import INGEST_TASK, AgentTask, InventoryOrder, host_queue, parse_report
from workers.signing.envelope import verify
from workers.signing.keys import load_private_key, public_key_text
from workers.tests.conftest import sign_order
from workers.trust import AGENT_KEY_FILE

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
START_WAIT = 90.0
WAIT = 30.0
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Redis:
    """A redis-server of our own on a free port, without persistence."""

    def __init__(self, folder: Path) -> None:
        if shutil.which("redis-server") is None:
            pytest.skip("redis-server is not installed")
        self.port = free_port()
        self.folder = folder
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.folder,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait(lambda: self._answers(), "redis to start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def wait(check: Callable[[], T], what: str, timeout: float = WAIT, log: Path | None = None) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.02)
    tail = log.read_text(errors="replace")[-4000:] if log is not None and log.exists() else ""
    pytest.fail(f"timed out waiting for {what}\n{tail}")


class AgentProcess:
    def __init__(
        self, redis: Redis, models_dir: Path, state_dir: Path, log: Path, key: Ed25519PrivateKey
    ) -> None:
        self.host = f"test-outbox-{uuid.uuid4().hex[:8]}"
        self.ingest = f"ocrdash.ingest.{self.host}"
        self.queue = host_queue(self.host)
        self.redis, self.models_dir, self.state_dir, self.log, self.key = (
            redis,
            models_dir,
            state_dir,
            log,
            key,
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_"))}
        env.update(
            OCRDASH_BROKER_URL=self.redis.url,
            OCRDASH_HOST_NAME=self.host,
            OCRDASH_MODELS_DIR=str(self.models_dir),
            OCRDASH_STATE_DIR=str(self.state_dir),
            OCRDASH_INGEST_QUEUE=self.ingest,
            OCRDASH_DASHBOARD_PUBLIC_KEY=public_key_text(self.key),
            OCRDASH_HEARTBEAT_SECONDS="0",
        )
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"],
                cwd=ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=20)
            self.process = None

    def child(self) -> int:
        assert self.process is not None
        found: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").glob("*"):
            try:
                found += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                continue
        [child] = found
        return child

    def outbox(self) -> list[str]:
        path = self.state_dir / "agent.sqlite3"
        if not path.exists():
            return []
        with sqlite3.connect(path, timeout=10) as db:
            return [json_id for (json_id,) in db.execute("SELECT report_id FROM outbox")]

    def order(self, request_id: str) -> None:
        sender = Celery("test-dashboard", broker=self.redis.url, set_as_current=False)
        message = sign_order(InventoryOrder(host=self.host, request_id=request_id), self.key)
        sender.send_task(AgentTask.INVENTORY.value, args=[message], queue=self.queue)

    def queued(self) -> int:
        with Connection(self.redis.url) as conn:
            client = conn.default_channel.client  # type: ignore[attr-defined]  # kombu's Redis channel
            return int(client.llen(self.queue))

    def reports(self, until: Callable[[list[Any]], bool], timeout: float = WAIT) -> list[Any]:
        found: list[Any] = []
        deadline = time.monotonic() + timeout
        key = None
        with Connection(self.redis.url) as conn:
            queue = conn.SimpleQueue(self.ingest)
            try:
                while not until(found):
                    if time.monotonic() > deadline:
                        pytest.fail(
                            f"got {found}; agent log:\n{self.log.read_text(errors='replace')[-4000:]}"
                        )
                    try:
                        message = queue.get(block=True, timeout=1)
                    except queue.Empty:
                        continue
                    assert message.headers["task"] == INGEST_TASK
                    args, _kwargs, _embed = message.decode()
                    message.ack()
                    key = key or load_private_key(self.state_dir / AGENT_KEY_FILE).public_key()
                    verified = verify(args[0], key, expected_signer=self.host, expected_purpose=INGEST_TASK)
                    report = parse_report(verified.body)
                    if report.kind != "progress":  # progress of long work is not an answer
                        found.append(report)
            finally:
                queue.close()
        return found


@pytest.fixture
def setup(
    tmp_path: Path, models_dir: Path, state_dir: Path, dashboard_key: Ed25519PrivateKey
) -> Iterator[tuple[Redis, AgentProcess]]:
    redis = Redis(tmp_path)
    redis.start()
    agent = AgentProcess(redis, models_dir, state_dir, tmp_path / "agent.log", dashboard_key)
    agent.start()
    try:
        [hello] = agent.reports(lambda found: len(found) >= 1, timeout=START_WAIT)
        assert hello.request_id.startswith("startup-")
        for i in range(200):
            (models_dir / f"model_{i:04}.bin").write_bytes(f"weights {i}".encode())
        yield redis, agent
    finally:
        agent.kill()
        redis.stop()


def finish_with_the_broker_away(redis: Redis, agent: AgentProcess, request_id: str) -> None:
    """The order is taken, the broker stops, the order finishes: its report waits in the outbox."""
    child = agent.child()
    os.kill(child, signal.SIGSTOP)
    try:
        agent.order(request_id)
        wait(lambda: agent.queued() == 0, "the worker to take the order", log=agent.log)
        time.sleep(0.5)  # the main process hands it to the (paused) child
        redis.stop()
    finally:
        os.kill(child, signal.SIGCONT)
    wait(lambda: agent.outbox(), "the report to wait in the outbox", log=agent.log)


def test_a_report_waits_in_the_outbox_until_the_broker_is_back(setup: tuple[Redis, AgentProcess]) -> None:
    redis, agent = setup
    request_id = f"inv-{uuid.uuid4().hex[:8]}"
    finish_with_the_broker_away(redis, agent, request_id)
    time.sleep(3)  # a few failed sends, backing off
    assert agent.outbox()
    redis.start()
    found = agent.reports(lambda found: any(r.request_id == request_id for r in found), timeout=90)
    [report] = [r for r in found if r.request_id == request_id]
    assert report.kind == "inventory" and len(report.files) == 200
    wait(lambda: not agent.outbox(), "the outbox to empty", log=agent.log)


def test_a_report_left_by_a_killed_agent_is_sent_by_the_next_one(setup: tuple[Redis, AgentProcess]) -> None:
    redis, agent = setup
    request_id = f"inv-{uuid.uuid4().hex[:8]}"
    finish_with_the_broker_away(redis, agent, request_id)
    [waiting] = agent.outbox()
    agent.kill()  # SIGKILL, the whole process group: nothing in memory survives
    redis.start()
    agent.start()
    found = agent.reports(lambda found: any(r.request_id == request_id for r in found), timeout=START_WAIT)
    [report] = [r for r in found if r.request_id == request_id]
    assert report.report_id == waiting and report.kind == "inventory"


def test_the_started_agent_logs_its_fingerprint_and_what_it_can_see(
    setup: tuple[Redis, AgentProcess],
) -> None:
    _redis, agent = setup
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_"))}
    env.update(
        OCRDASH_BROKER_URL=agent.redis.url,
        OCRDASH_HOST_NAME=agent.host,
        OCRDASH_STATE_DIR=str(agent.state_dir),
        OCRDASH_DASHBOARD_PUBLIC_KEY=public_key_text(agent.key),
    )
    printed = subprocess.run(
        [sys.executable, "-m", "workers", "agent", "--print-fingerprint"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.strip()
    assert printed
    log = agent.log.read_text(errors="replace")
    # Logged once the worker's logging is up (before it, the line went nowhere), and once.
    assert len([x for x in log.splitlines() if f"signs with key {printed}" in x]) == 1
    assert "in-use check: " in log
