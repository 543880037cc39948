"""A full state folder is said, not silent: a real size-limited tmpfs filled to the last byte."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from workers.schema import AgentTask, ErrorReport, FreeOrder, PruneOrder
from workers.tasks import Agent
from workers.tests.conftest import sign_order, write
from workers.tests.test_agent import HOST, config, ident
from workers.trust import AgentTrust

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("mount") is None, reason="needs root to mount a tmpfs"
)


@pytest.fixture
def small_state(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "state-fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount)], check=False
    )
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Write until the file system refuses one more byte."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(fd, b"\0" * size):
                    pass
    finally:
        os.close(fd)


def test_an_order_on_a_full_state_folder_ends_with_a_report_saying_so(
    small_state: Path, models_dir: Path, dashboard_key: Ed25519PrivateKey
) -> None:
    write(models_dir / "old.bin", b"x")
    item = ident(models_dir, "old.bin")
    # The agent has run before (its key, replay table and database exist) ...
    trust = AgentTrust.load(config(models_dir, small_state, dashboard_key))  # once, at worker start
    agent = Agent(config(models_dir, small_state, dashboard_key), trust=trust)
    agent.handle(AgentTask.FREE, sign_order(FreeOrder(host=HOST, request_id="f0"), dashboard_key))
    agent.close()
    fill(small_state)  # ... then the disk fills up.
    agent = Agent(config(models_dir, small_state, dashboard_key), trust=trust)
    try:
        order = PruneOrder(host=HOST, request_id="p-full", items=[item])
        [report] = agent.handle(AgentTask.PRUNE, sign_order(order, dashboard_key))
    finally:
        agent.close()
    assert isinstance(report, ErrorReport) and report.request_id == "p-full"
    assert "state folder is full" in report.reason
    assert agent.unqueued == [report]  # for the task to send at once: the outbox cannot take it
    assert (models_dir / "old.bin").exists()


def test_a_full_state_folder_at_the_first_start_is_said_too(
    small_state: Path, models_dir: Path, dashboard_key: Ed25519PrivateKey
) -> None:
    trust = AgentTrust.load(config(models_dir, small_state, dashboard_key))  # the key fits
    Agent(config(models_dir, small_state, dashboard_key), trust=trust).close()
    for name in os.listdir(small_state):
        if name.startswith("agent.sqlite3"):
            os.unlink(small_state / name)
    fill(small_state)
    agent = Agent(config(models_dir, small_state, dashboard_key), trust=trust)
    try:
        [report] = agent.handle(
            AgentTask.FREE, sign_order(FreeOrder(host=HOST, request_id="f1"), dashboard_key)
        )
    finally:
        agent.close()
    assert isinstance(report, ErrorReport) and report.request_id == "f1"
    assert "full" in report.reason


@pytest.mark.slow
def test_a_running_agent_whose_state_folder_fills_up_says_so_through_the_broker(
    tmp_path: Path, models_dir: Path, dashboard_key: Ed25519PrivateKey
) -> None:
    """Case 7 with real processes: the agent worker runs on real Redis, its state folder (a
    real tmpfs) fills up, and a prune sent to it is answered on the ingest queue with the
    reason, the file untouched; the request does not stay ``dispatched`` in silence."""
    import uuid

    from celery import Celery

    from workers.schema import host_queue
    from workers.tests.test_agent_restart import agent_env, launch, stop
    from workers.tests.test_worker import REDIS_URL, require_redis
    from workers.tests.test_worker_lost import START_WAIT, Ingest
    from workers.tests.test_worker_lost import Agent as AgentProcess

    require_redis(REDIS_URL)
    mount = tmp_path / "state-fs"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", str(mount)]).returncode:
        pytest.skip("cannot mount a tmpfs here")
    host = f"test-full-{uuid.uuid4().hex[:10]}"
    queue, ingest_queue, log = host_queue(host), f"ocrdash.ingest.{host}", tmp_path / "agent.log"
    write(models_dir / "old.bin", b"x")
    env = agent_env(host, models_dir, mount, dashboard_key)
    agent = AgentProcess(host, queue, ingest_queue, models_dir, mount, log, launch(env, log))
    try:
        reports = Ingest(agent)
        [hello] = reports.take(1, timeout=START_WAIT)
        assert hello.kind == "inventory"
        fill(mount)
        order = PruneOrder(
            host=host, request_id=f"p-{uuid.uuid4().hex[:8]}", items=[ident(models_dir, "old.bin")]
        )
        sender = Celery("test-dashboard", broker=REDIS_URL, set_as_current=False)
        sender.send_task(AgentTask.PRUNE.value, args=[sign_order(order, dashboard_key)], queue=queue)

        [answer] = reports.take(1)
        assert isinstance(answer, ErrorReport) and answer.request_id == order.request_id
        assert "state folder is full" in answer.reason
        assert (models_dir / "old.bin").read_bytes() == b"x"
        assert agent.process.poll() is None  # still running, still answering
    finally:
        stop(agent)
        subprocess.run(["umount", "-l", str(mount)], check=False)
