"""The agent saying it is alive: a heartbeat every few seconds, an inventory after every (re)connect.

Two things, both in the worker's main process (the pool child runs orders):

* ``Heartbeat``: a daemon thread that sends a small signed ``HeartbeatReport`` every
  ``OCRDASH_HEARTBEAT_SECONDS`` on a broker connection of its own (kombu connections are
  not shared between threads). It never raises: a broker that is down costs a beat, logged
  once, and the next beat tries again; an agent whose beats stop is what the dashboard shows
  as offline.
* ``PresenceStep``: a consumer bootstep. Celery starts the consumer's steps again after it
  lost and regained the broker connection, so ``start`` runs at the first connect *and* at
  every reconnect: each time it orders this host a fresh inventory (the dashboard may have
  missed anything that happened while the link was down) and makes sure the heartbeat runs.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery, bootsteps

from workers import __version__
from workers.aspose_backend import AsposeSession, aspose_version
from workers.config import AgentConfig
from workers.schema import INGEST_TASK, AgentTask, HeartbeatReport, InventoryOrder, ModelDirState
from workers.state import StateDB

log = logging.getLogger(__name__)
# The request ids of the inventories an agent orders itself at every (re)connect.
STARTUP_PREFIX = "startup-"


def model_dir_state(root: Path) -> ModelDirState:
    """The folder's state from one stat and one access check: cheap enough for every beat."""
    try:
        if not root.is_dir():
            return ModelDirState.MISSING
    except OSError:
        return ModelDirState.UNREADABLE
    return ModelDirState.OK if os.access(root, os.R_OK | os.X_OK) else ModelDirState.UNREADABLE


def heartbeat_report(config: AgentConfig, root: Path, backlog: int | None = None) -> HeartbeatReport:
    """This host's heartbeat now: folder state, disk, versions, backlog and its own labels."""
    state = model_dir_state(root)
    total = free = None
    if state is ModelDirState.OK:
        try:
            usage = shutil.disk_usage(root)
            total, free = usage.total, usage.free
        except OSError:
            pass
    return HeartbeatReport(
        host=config.host_name,
        agent_version=__version__,
        interval_seconds=max(1, config.heartbeat_seconds),
        model_dir_state=state,
        disk_total=total,
        disk_free=free,
        aspose_version=aspose_version(),
        backlog=backlog,
        labels=config.labels,
    )


def queue_backlog(connection: Any, queue: str) -> int | None:
    """Messages waiting on ``queue``, or None when the transport cannot say without side effects."""
    try:
        result = connection.default_channel.queue_declare(queue=queue, passive=True)
    except Exception:  # a transport without passive declares, or the queue does not exist yet
        return None
    count = getattr(result, "message_count", None)
    return int(count) if isinstance(count, int) else None


class Heartbeat:
    """The heartbeat thread of one agent (start once; ``stop`` ends it within a second)."""

    def __init__(self, app: Celery, config: AgentConfig, trust: Any) -> None:
        self.app = app
        self.config = config
        self.trust = trust
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._root: Path | None = config.models_dir
        self._failing = False
        self._after: str | None = None
        self.sent = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, after: str | None = None) -> None:
        """Start beating once the startup inventory ``after`` (a request id) has been sent.

        Waiting for it means the dashboard knows the host, and has enrolled its key, before
        the first beat arrives: a new host's beats are never refused as unsigned noise.
        """
        if self.config.heartbeat_seconds <= 0 or self.running:
            return
        self._after = after
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ocrdash-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def root(self) -> Path:
        if self._root is None:
            # Aspose's own default folder, resolved once (it depends only on the working directory).
            with AsposeSession(None) as session:
                self._root = session.model_dir
        return self._root

    def beat(self) -> None:
        """Send one heartbeat now; raises on a broker error (the loop logs it)."""
        with self.app.connection_for_write() as connection:
            backlog = queue_backlog(connection, self.config.queue)
            report = heartbeat_report(self.config, self.root(), backlog)
            self.app.send_task(
                INGEST_TASK,
                args=[self.trust.sign_report(report)],
                queue=self.config.ingest_queue,
                connection=connection,
                retry=False,
            )
        self.sent += 1

    def _startup_sent(self) -> bool:
        if self._after is None:
            return True
        try:
            with StateDB(self.config.state_dir) as db:  # StateDB holds a connection: close it
                return db.run_finished(AgentTask.INVENTORY.value, self._after)
        except Exception:  # the state folder is busy or broken: the run's own errors say why
            return False

    def _loop(self) -> None:
        # Polling, not a signal: the startup inventory runs in the pool's child process.
        while not self._stop.is_set() and not self._startup_sent():
            self._stop.wait(0.5)
        while not self._stop.is_set():
            try:
                self.beat()
                if self._failing:
                    log.info("heartbeat: sending again")
                self._failing = False
            except Exception as exc:  # the broker is down or the folder vanished mid-stat: next beat
                if not self._failing:
                    log.warning("heartbeat not sent: %s: %s", type(exc).__name__, exc)
                self._failing = True
            self._stop.wait(self.config.heartbeat_seconds)


def startup_order(config: AgentConfig) -> InventoryOrder:
    """The inventory an agent orders itself at every (re)connect (signed with its own key,
    see trust.py); ``Agent`` knows it by its request id's prefix."""
    return InventoryOrder(
        host=config.host_name, request_id=f"{STARTUP_PREFIX}{int(time.time())}-{uuid.uuid4().hex[:8]}"
    )


def install(app: Celery, config: AgentConfig, trust: Any) -> Heartbeat:
    """Add the presence step to ``app``'s consumer; returns the heartbeat it drives."""
    heartbeat = Heartbeat(app, config, trust)

    class PresenceStep(bootsteps.StartStopStep):
        """Runs at every (re)connect of the consumer: a fresh inventory, and the heartbeat on."""

        requires = ("celery.worker.consumer.tasks:Tasks",)

        def start(self, consumer: Any) -> None:
            order = startup_order(config)
            try:
                app.send_task(
                    AgentTask.INVENTORY.value, args=[trust.startup_order(order)], queue=config.queue
                )
            except Exception as exc:  # the connection dropped again already: the next start resends
                log.warning("startup inventory not queued: %s", exc)
            heartbeat.start(after=order.request_id)

        def shutdown(self, consumer: Any) -> None:
            heartbeat.stop()

    app.steps["consumer"].add(PresenceStep)
    return heartbeat
