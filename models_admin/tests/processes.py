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
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest
from django.conf import settings
from django.db import connection
from kombu import Connection

from models_admin import trust
from workers.schema import host_queue

ROOT = Path(__file__).resolve().parents[2]
WAIT = 90.0  # the agent's first start loads Aspose's bundled runtime
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], logs: list[Path], timeout: float = WAIT) -> T:
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
    with log.open("wb") as out:
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
class Fleet:
    """One running OCR host and the ingest worker that stores what it reports."""

    host: str
    models_dir: Path
    ingest_queue: str
    broker: str
    logs: list[Path]

    def wait_for(self, what: str, check: Callable[[], T], timeout: float = WAIT) -> T:
        return wait_for(what, check, self.logs, timeout)


def _clean_env() -> dict[str, str]:
    # The test process's own settings must not leak into a worker: each gets exactly its own.
    return {k: v for k, v in os.environ.items() if not k.startswith(("OCRDASH_", "CELERY_", "DJANGO_"))}


@contextmanager
def running_fleet(
    host: str, models_dir: Path, logs_dir: Path, *, token: str | None = None
) -> Iterator[Fleet]:
    """Start the ingest worker and ``host``'s agent on ``models_dir``; stop both and drop their queues.

    The agent is installed as a real host would be: the dashboard's public key pinned and a
    one-time enrollment ``token`` (a fresh one bound to ``host`` when not given).
    """
    if connection.vendor != "postgresql":
        pytest.skip("the ingest worker process needs a database server it can share with the test")
    if token is None:
        _row, token = trust.create_token("installer", label="end-to-end test", host_name=host)
    ingest_queue = f"ocrdash.ingest.{host}"
    broker = settings.CELERY_BROKER_URL
    base = _clean_env()
    ingest_log, agent_log = logs_dir / "ingest.log", logs_dir / "agent.log"
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
    try:
        agent = start(
            [sys.executable, "-m", "workers", "agent", "--loglevel", "INFO"],
            {
                **base,
                "OCRDASH_BROKER_URL": broker,
                "OCRDASH_HOST_NAME": host,
                "OCRDASH_MODELS_DIR": str(models_dir),
                "OCRDASH_STATE_DIR": str(logs_dir / "state"),
                "OCRDASH_INGEST_QUEUE": ingest_queue,
                "OCRDASH_DASHBOARD_PUBLIC_KEY": trust.dashboard_public_key(),
                "OCRDASH_ENROLLMENT_TOKEN": token,
            },
            agent_log,
        )
        try:
            yield Fleet(host, models_dir, ingest_queue, broker, [ingest_log, agent_log])
        finally:
            stop(agent)
    finally:
        stop(ingest)
        with Connection(broker) as conn:
            for queue in (ingest_queue, host_queue(host)):
                conn.SimpleQueue(queue).queue.delete()
