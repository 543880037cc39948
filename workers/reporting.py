"""The one place where the agent hands a report to the broker, through an outbox.

Reports go to the dashboard's ingest task by name, so the agent never imports dashboard
code. Every report leaves signed by this host's key (``AgentTrust.sign_report``): the
dashboard takes no unsigned report.

Nothing is sent that was not stored first. A finished order's reports go into the
``outbox`` table of the state database in the same transaction that marks the run finished
(``StateDB.finish_run``), and leave it only once the broker took them. A send that fails
(the broker away, a full socket buffer) leaves the row with a later ``next_try_at``, backing
off from 1 s to a minute; the ``OutboxSender`` thread of the worker's main process tries
the due rows again, and at every start of the worker it sends whatever a killed or stopped
agent left behind. A report sent twice (the task's own attempt and the sender racing, or a
crash between the broker's acceptance and the delete) is harmless: the dashboard keeps one
report per report id. Each send is signed afresh with ``sent_at`` set to now.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any

from celery import Celery

from workers.inventory import ScannedInventory
from workers.schema import (
    INGEST_QUEUE,
    INGEST_TASK,
    SCHEMA_VERSION,
    ErrorReport,
    FreeReport,
    HeartbeatReport,
    InventoryReport,
    ProgressReport,
    PruneReport,
    PurgeReport,
    RestoreReport,
    SchemaError,
    parse_report,
)
from workers.state import StateDB

if TYPE_CHECKING:
    from workers.config import AgentConfig
    from workers.trust import AgentTrust

log = logging.getLogger(__name__)

AnyReport = (
    ScannedInventory
    | InventoryReport
    | PruneReport
    | RestoreReport
    | PurgeReport
    | FreeReport
    | HeartbeatReport
    | ProgressReport
    | ErrorReport
)

# How often the sender looks for due rows; a failed send waits at least BACKOFF_FIRST.
POLL_SECONDS = 1.0
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 60.0


def backoff(attempts: int) -> float:
    """Seconds to wait after the ``attempts``-th failed send: 1, 2, 4, ... at most a minute."""
    return float(min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1)))


def send_report(
    app: Celery, report: AnyReport, trust: AgentTrust, queue: str = INGEST_QUEUE, **options: Any
) -> None:
    """Sign ``report`` now and hand it to the broker; raises if the broker did not take it."""
    app.send_task(INGEST_TASK, args=[trust.sign_report(report)], queue=queue, **options)


def outgoing_report(body: dict[str, Any]) -> AnyReport:
    """A stored report, checked again before it is signed (an older agent's row, a damaged one).

    An inventory stays in wire form (``ScannedInventory``): parsed whole, a 100,000-file
    report would cost the sender more memory than the scan that made it.
    """
    if body.get("kind") == "inventory" and body.get("schema_version") == SCHEMA_VERSION:
        return ScannedInventory.from_json(body)
    return parse_report(body)


def flush_outbox(
    app: Celery,
    db: StateDB,
    trust: AgentTrust,
    queue: str = INGEST_QUEUE,
    *,
    everything: bool = False,
    connection: Any = None,
) -> int:
    """Send the due reports of the outbox, oldest first; returns how many the broker took.

    Stops at the first failure (the broker is away: the rest would fail the same way) and
    pushes every due row back by the backoff. ``everything``: ignore the backoff (at start).
    Never raises for a send; a state database that cannot be read raises.
    """
    sent = 0
    for report_id, body in db.due_reports(everything=everything):
        if not db.claim_report(report_id, everything=everything):
            continue  # the other sender has it
        try:
            report = outgoing_report(body)
        except SchemaError as exc:  # written by an older agent, or damaged: keep it, say so
            log.error("outbox: report %s cannot be read and is kept aside: %s", report_id, exc)
            db.report_failed(report_id, f"unreadable: {exc}", hold=BACKOFF_MAX * 60)
            continue
        try:
            send_report(app, report, trust, queue, retry=False, connection=connection)
        except Exception as exc:  # the broker is away: keep it, and the ones after it
            attempts = db.report_failed(report_id, f"{type(exc).__name__}: {exc}")
            db.postpone_due(backoff(attempts))
            log.warning(
                "outbox: report %s (%s) not sent, attempt %d, next in %.0f s: %s",
                report_id,
                report.kind,
                attempts,
                backoff(attempts),
                exc,
            )
            break
        db.report_sent(report_id)
        sent += 1
    return sent


class OutboxSender:
    """The thread of the worker's main process that empties the outbox (start once).

    It has its own state connection and its own broker connection (neither is shared
    between threads), and never raises: a failure is logged and tried again.
    """

    def __init__(self, app: Celery, config: AgentConfig, trust: AgentTrust) -> None:
        self.app = app
        self.config = config
        self.trust = trust
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self.running:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ocrdash-outbox", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        everything = True  # leftovers of an earlier run go first, whatever their backoff said
        db: StateDB | None = None
        while not self._stop.is_set():
            try:
                if db is None:
                    db = StateDB(self.config.state_dir)
                pending = db.pending_reports()
                if pending:
                    with self.app.connection_for_write() as connection:
                        sent = flush_outbox(
                            self.app,
                            db,
                            self.trust,
                            self.config.ingest_queue,
                            everything=everything,
                            connection=connection,
                        )
                    if sent:
                        log.info("outbox: sent %d report(s), %d waiting", sent, db.pending_reports())
                everything = False
            except Exception as exc:  # the state folder is unreadable or full: try again later
                log.warning("outbox: %s: %s", type(exc).__name__, exc)
                if db is not None:
                    db.close()
                    db = None
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()
        if db is not None:
            db.close()
