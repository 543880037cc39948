"""Real worker processes for the end-to-end tests: one OCR host's agent and the dashboard's
ingest worker, on the real broker.

The ingest worker is a separate ``celery -A ocrdash worker`` process, so it must see what the
test commits: tests that use it run with ``transaction=True`` (nothing is hidden in a test
transaction) and the worker is pointed at this run's test database. Both workers use queues
unique to the run, so other test runs on the same Redis neither steal nor feed them.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection

from models_admin.fleet import trust
from workers.schema import host_queue

ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0  # the agent's first start loads Aspose's bundled runtime
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], logs: list[Path], timeout: float = WAIT) -> T:
    """Poll until check() returns something truthy; fail with the workers' logs otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.3)
    tails = "\n".join(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}" for log in logs)
    pytest.fail(f"timed out waiting for {what}\n{tails}")


def database_url() -> str:
    """This run's test database (pytest-django renamed it), as a URL for settings_test in another process."""
    db = connection.settings_dict
    auth = (db["USER"] or "postgres") + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own process group, so stop() also ends the children it forks."""
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    """A warm shutdown first (Celery finishes its task), then a kill."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def unique_host_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@dataclass
class Agent:
    """One OCR host's agent process, which a test may stop and start again."""

    host: str
    models_dir: Path
    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        if self.process is None or self.process.poll() is not None:
            # Append: a restarted agent's log follows the first run's.
            self.process = start(
                [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"], self.env, self.log
            )

    def stop(self) -> None:
        if self.process is not None:
            stop(self.process)
            self.process = None


@dataclass
class Fleet:
    """Running OCR hosts and the ingest worker that stores what they report."""

    host: str
    models_dir: Path
    ingest_queue: str
    broker: str
    logs: list[Path]
    agents: dict[str, Agent] = field(default_factory=dict)

    def wait_for(self, what: str, check: Callable[[], T | None], timeout: float = WAIT) -> T:
        return wait_for(what, check, self.logs, timeout)

    @property
    def agent(self) -> Agent:
        return self.agents[self.host]


def _clean_env() -> dict[str, str]:
    # The test process's own settings must not leak into a worker: each gets exactly its own.
    return {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_", "DJANGO_"))}


@contextmanager
def running_fleet(
    host: str,
    models_dir: Path,
    logs_dir: Path,
    *,
    token: str | None = None,
    agent_env: dict[str, str] | None = None,
    more_hosts: dict[str, Path] | None = None,
) -> Iterator[Fleet]:
    """Start the ingest worker and ``host``'s agent on ``models_dir`` (and one agent per entry of
    ``more_hosts``); stop them all and drop their queues.

    Each agent is installed as a real host would be: the dashboard's public key pinned and a
    one-time enrollment ``token`` (a fresh one bound to its host when not given); ``agent_env``
    adds settings to every agent (a short heartbeat, labels).
    """
    if connection.vendor != "postgresql":
        pytest.skip("the ingest worker process needs a database server it can share with the test")
    hosts = {host: models_dir, **(more_hosts or {})}
    ingest_queue = f"ocrdash.ingest.{host}"
    broker = settings.CELERY_BROKER_URL
    base = _clean_env()
    ingest_log = logs_dir / "ingest.log"
    ingest = start(
        [
            *(sys.executable, "-m", "celery", "-A", "ocrdash", "worker", "--queues", ingest_queue),
            *("--pool", "solo", "--hostname", f"ingest-{host}@localhost", "--without-gossip"),
            *("--without-mingle", "--without-heartbeat", "--loglevel", "INFO"),
        ],
        {
            **base,
            "DJANGO_SETTINGS_MODULE": "ocrdash.settings_test",
            "OCRDASH_TEST_DATABASE_URL": database_url(),
            "OCRDASH_TEST_BROKER_URL": broker,
        },
        ingest_log,
    )
    agents: dict[str, Agent] = {}
    try:
        for name, folder in hosts.items():
            if token is None or name != host:
                _row, host_token = trust.create_token("installer", label="end-to-end test", host_name=name)
            else:
                host_token = token
            state = logs_dir / "state" if name == host else logs_dir / f"state-{name}"
            agents[name] = Agent(
                name,
                folder,
                {
                    **base,
                    "OCRDASH_BROKER_URL": broker,
                    "OCRDASH_HOST_NAME": name,
                    "OCRDASH_MODELS_DIR": str(folder),
                    "OCRDASH_STATE_DIR": str(state),
                    "OCRDASH_INGEST_QUEUE": ingest_queue,
                    "OCRDASH_DASHBOARD_PUBLIC_KEY": trust.dashboard_public_key(),
                    "OCRDASH_ENROLLMENT_TOKEN": host_token,
                    **(agent_env or {}),
                },
                logs_dir / ("agent.log" if name == host else f"agent-{name}.log"),
            )
            agents[name].start()
        logs = [ingest_log, *(a.log for a in agents.values())]
        yield Fleet(host, models_dir, ingest_queue, broker, logs, agents)
    finally:
        for agent in agents.values():
            agent.stop()
        stop(ingest)
        with Connection(broker) as conn:
            for queue in (ingest_queue, *(host_queue(name) for name in hosts)):
                conn.SimpleQueue(queue).queue.delete()
