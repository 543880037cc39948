"""The agent's work per order, and the thin Celery tasks on top of it.

``Agent.handle`` turns one order (a JSON dict) into the reports to send; it never raises for
a bad order, so a malformed or poisonous message ends as an ErrorReport and an ack instead of
a retry loop. Before anything else it checks the order's signature (``workers.trust``): an
order the dashboard did not sign for this host, an expired one or a replayed one touches
nothing and is answered with an ErrorReport saying why.

The same signed message delivered twice (late acks, a worker lost mid-task) is a replay and
is refused; the dashboard's re-send of an unanswered request is signed afresh, and a finished
order is recognised by its request id and answered with the very reports sent the first time
(same report ids, so the dashboard drops the duplicate). An order that keeps killing its
worker is given up after a few starts.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.signals import worker_ready

from workers import __version__
from workers.aspose_backend import AsposeSession, default_ocr_resources_dir
from workers.config import AgentConfig
from workers.inventory import ScannedInventory, inventory_report, scan
from workers.presence import STARTUP_PREFIX, install
from workers.procs import visibility
from workers.progress import Phase, ProgressReporter, folder_bytes
from workers.prune import (
    QUARANTINE_DIR,
    Pruner,
    StoreRoots,
    account_prune_stores,
    account_purge_stores,
    account_restore_stores,
    prune_stores,
    purge_stores,
    restore_stores,
)
from workers.reporting import AnyReport, OutboxSender, flush_outbox, outgoing_report, send_report
from workers.schema import (
    ORDER_TASKS,
    AgentTask,
    ErrorReport,
    FreeOrder,
    FreeReport,
    InventoryOrder,
    PruneOrder,
    PruneReport,
    PurgeOrder,
    PurgeReport,
    RestoreOrder,
    RestoreReport,
    SchemaError,
    Store,
    parse_order,
)
from workers.state import StateDB, StateFull, is_disk_full
from workers.trust import AgentTrust, OrderRefused

log = logging.getLogger(__name__)

AnyOrder = InventoryOrder | FreeOrder | PruneOrder | RestoreOrder | PurgeOrder
# Orders that move or delete files: begun and never finished, a restarted agent answers them
# from its journal and the disk (item by item; a purge, request by request).
ITEM_TASKS = (AgentTask.PRUNE.value, AgentTask.RESTORE.value, AgentTask.PURGE.value)
INTERRUPTED = "the agent stopped before the order finished (it was restarted)"
ProgressHook = Callable[[int], None] | ProgressReporter


class Agent:
    """One host's agent: its settings, its state database, and what each order does."""

    def __init__(
        self, config: AgentConfig, progress: ProgressHook | None = None, trust: AgentTrust | None = None
    ) -> None:
        self.config = config
        self.trust = trust or AgentTrust.load(config)
        self.progress = progress
        self.unqueued: list[AnyReport] = []
        # A full state folder must not stop the agent from saying so (see handle).
        self.state_error: StateFull | None = None
        try:
            self.db = StateDB(config.state_dir)
        except StateFull as exc:
            self.state_error = exc

    def close(self) -> None:
        """Close the state database (one connection per task: see workers.state)."""
        if self.state_error is None:
            self.db.close()

    def session(self) -> AsposeSession:
        # Both stores always: the configured OCR resources folder, else Resources' own default.
        return AsposeSession(
            self.config.models_dir, self.config.state_dir, self.config.ocr_resources_dir or True
        )

    def _error(self, task: str, reason: str, request_id: str | None = None) -> ErrorReport:
        return ErrorReport(
            host=self.config.host_name,
            agent_version=__version__,
            request_id=request_id,
            task=task,
            reason=reason[:4000],
        )

    def handle(self, task: str, message: Any) -> list[AnyReport]:
        """The reports answering the signed ``message`` sent to ``task``. Never raises.

        The reports are in the outbox when this returns (``workers.reporting``), except when
        the state folder cannot take them: those are in ``self.unqueued``, for the caller to
        send at once. Whatever goes wrong, bad input included, ends as a report and a log line.
        """
        self.unqueued = []
        rid: str | None = None
        try:
            reports, queued, rid = self._handle(task, message)
        except Exception as exc:
            if isinstance(exc, StateFull) or is_disk_full(exc, self.config.state_dir):
                # Reached only past the signature check (the replay guard writes after it), so
                # the request id is the dashboard's own: its request is failed, not left waiting.
                rid = rid or _request_id(message)
                reason = f"the agent's state folder is full ({self.config.state_dir}): nothing was done"
                log.error("order %s: %s (%s)", rid, reason, exc)
                self.unqueued = [self._error(task, reason, rid)]
                return self.unqueued
            # A bug: report it, never let it loop through redelivery.
            log.exception("order %s to %s failed", rid, task)
            reports, queued = [self._error(task, f"internal error: {type(exc).__name__}", rid)], False
        if self.state_error is not None:
            self.unqueued = list(reports)
        elif not queued:
            try:
                self.db.queue_reports([r.to_json() for r in reports])
            except Exception as exc:
                log.error("reports not stored in the outbox, sending them at once: %s", exc)
                self.unqueued = list(reports)
        return reports

    def _handle(self, task: str, message: Any) -> tuple[list[AnyReport], bool, str | None]:
        """(reports, already in the outbox, request id) for ``message``; see ``handle``.

        The signature is checked first, so nothing below runs for a message the dashboard
        did not send to this host (not even the schema check: a forged order learns nothing).
        """
        payload: dict[str, Any] | None
        try:
            payload = self.trust.check_order(task, message)
        except OrderRefused as exc:
            payload = self._redelivered(task, exc)
            if payload is None:
                log.warning("refused a message sent to %s: %s", task, exc.reason)
                return [self._error(task, f"order refused: {exc.reason}", exc.request_id)], False, None
        if self.state_error is not None:
            raise self.state_error
        raw_id = payload.get("request_id") if isinstance(payload, dict) else None
        request_id = raw_id if isinstance(raw_id, str) and 0 < len(raw_id) <= 64 else None
        try:
            order = parse_order(payload)
        except SchemaError as exc:
            log.warning("refused a malformed order to %s: %s", task, exc)
            return [self._error(task, f"malformed order: {exc}", request_id)], False, request_id
        if ORDER_TASKS[order.kind] != task:
            reason = f"a {order.kind!r} order was sent to {task}"
            return [self._error(task, reason, order.request_id)], False, order.request_id
        if order.host != self.config.host_name:
            reason = f"order for host {order.host!r} reached {self.config.host_name!r}"
            return [self._error(task, reason, order.request_id)], False, order.request_id

        attempts, sent = self.db.start_attempt(task, order.request_id, order=payload)
        if sent is not None:
            return [outgoing_report(r) for r in sent], False, order.request_id
        if attempts > self.config.max_attempts:
            reports = self._account(task, order, f"gave up after {attempts - 1} attempts")
        else:
            try:
                reports = self._run(order)
            except StateFull:
                raise
            except Exception as exc:  # a bug, an I/O failure, the soft time limit: say what was done
                log.exception("order %s failed", order.request_id)
                reports = self._account(task, order, f"{type(exc).__name__}: {exc}")
        self.db.finish_run(task, order.request_id, [r.to_json() for r in reports])
        return reports, True, order.request_id

    def _account(self, task: str, order: AnyOrder, reason: str, *, inventory: bool = True) -> list[AnyReport]:
        """The end of an order that did not run to its end: what became of each item, then a fresh inventory.

        An ErrorReport alone would leave the dashboard believing nothing moved while files
        sit in quarantine; so a prune or restore always answers item by item (from the
        record, else from the disk), in each item's own store, and a purge request by request
        (what was purged, what is still in quarantine); the inventory that follows shows the
        folders as they are (``inventory`` False: the caller sends one anyway).
        """
        host, rid = self.config.host_name, order.request_id
        common: dict[str, Any] = {"host": host, "request_id": rid, "agent_version": __version__}
        log.warning("order %s ends without running to its end: %s", rid, reason)
        try:
            roots = self.store_roots()
            if isinstance(order, PruneOrder) and order.items:
                outcomes = account_prune_stores(roots, self.db, rid, order.items, reason)
                reports: list[AnyReport] = [
                    PruneReport(**common, mode=order.mode, outcomes=outcomes, freed=True)
                ]
            elif isinstance(order, RestoreOrder):
                outcomes = account_restore_stores(
                    roots, self.db, rid, order.prune_request_id, _restore_paths(order), reason
                )
                reports = [
                    RestoreReport(
                        **common, prune_request_id=order.prune_request_id, outcomes=outcomes, freed=True
                    )
                ]
            elif isinstance(order, PurgeOrder):
                purged, kept = account_purge_stores(roots, self.db, rid, order.prune_request_ids)
                reports = [
                    PurgeReport(
                        **common,
                        purged_requests=[p.request_id for p in purged],
                        bytes_purged=sum(p.bytes_purged for p in purged),
                        purged=purged,
                        kept=kept,
                        detail=reason[:2000],
                        freed=True,
                    )
                ]
            else:
                return [self._error(task, reason, rid)]
        except Exception as exc:  # even the disk cannot be read: say so, with the first reason
            log.exception("order %s: the items could not be accounted for", rid)
            return [self._error(task, f"{reason}; the items could not be checked: {exc}", rid)]
        if not inventory:
            return reports
        try:
            reports.append(self.inventory(rid))
        except Exception as exc:
            log.warning("order %s: no inventory after it: %s", rid, exc)
        return reports

    def finish_interrupted(self, current: str | None = None) -> int:
        """Answer every order that moves or deletes files which this agent began and never finished.

        A SIGKILL or a restart of the whole agent leaves its message unacknowledged on the
        broker, handed back only after the visibility timeout (hours), and the dashboard would
        re-send only after its resend interval: meanwhile the request showed nothing although
        files may sit in quarantine. So the startup inventory first reads the journal (the
        verified orders of runs that never finished, ``StateDB.unfinished_runs``) and answers
        each one item by item from the record and the disk, moving nothing: quarantined,
        restored, or not done (a purge: which requests' folders went, which are still there).
        Its own inventory follows these answers in the outbox. The run is then finished: a
        later copy of the order gets these same reports.

        Runs one order at a time (the agent's worker has one process), so no order of this
        agent is running while it looks; orders of other hosts (agents sharing the state
        folder) are left alone. ``current``: the startup inventory's own request id.
        Returns how many orders it answered.
        """
        answered = 0
        for task, rid, body in self.db.unfinished_runs(ITEM_TASKS):
            if rid == current:
                continue
            try:
                order = parse_order(body)
            except SchemaError as exc:  # journaled by another version of the agent
                log.warning("order %s in the journal cannot be read: %s", rid, exc)
                continue
            if order.host != self.config.host_name:
                continue  # another host's agent shares this state folder: its order, maybe running
            reports = self._account(task, order, INTERRUPTED, inventory=False)
            self.db.finish_run(task, rid, [r.to_json() for r in reports])
            answered += 1
        return answered

    def session_root(self) -> Path:
        """The model folder, without holding an Aspose session (accounting touches no model)."""
        if self.config.models_dir is not None:
            return self.config.models_dir
        with self.session() as session:
            return session.get_local_path()

    def store_roots(self) -> StoreRoots:
        """Both stores' roots, as a session would set them (``_roots``), without holding one."""
        ocr = self.config.ocr_resources_dir
        return {
            Store.LLM: self.session_root(),
            Store.OCR: Path(os.path.abspath(ocr)) if ocr is not None else default_ocr_resources_dir(),
        }

    def _redelivered(self, task: str, refused: OrderRefused) -> dict[str, Any] | None:
        """The body of an authentic message seen before whose run never finished, else None.

        That is the broker handing back the order of a worker that died mid-run (late acks
        with reject_on_worker_lost): carrying on is what the attempt counter below is for, and
        it gives up after a few starts. A copy of an order whose run finished stays refused as
        a replay, and touches nothing.
        """
        body = refused.replayed
        request_id = body.get("request_id") if body is not None else None
        if not isinstance(request_id, str) or not self.db.run_unfinished(task, request_id):
            return None
        log.warning("carrying on order %s: redelivered after its worker was lost", request_id)
        return body

    def _run(self, order: AnyOrder) -> list[AnyReport]:
        host, rid = self.config.host_name, order.request_id
        common: dict[str, Any] = {"host": host, "request_id": rid, "agent_version": __version__}
        if isinstance(order, InventoryOrder):
            if rid.startswith(STARTUP_PREFIX):
                self.finish_interrupted(current=rid)
            return [self.inventory(rid)]
        if isinstance(order, FreeOrder):
            with self.session() as session:
                pass
            return [FreeReport(**common, freed=session.freed)]
        if isinstance(order, PruneOrder):
            with self.session() as session:
                self._begin(rid, "pruning", total_items=len(order.items))
                outcomes = prune_stores(
                    _roots(session),
                    self.db,
                    rid,
                    order.items,
                    order.mode,
                    on_item=self._on_item(),
                    in_use=self.config.in_use_check,
                )
            # Files moved: the fresh inventory lets the dashboard's snapshot follow at once.
            return [
                PruneReport(**common, mode=order.mode, outcomes=outcomes, freed=session.freed),
                self.inventory(rid),
            ]
        if isinstance(order, RestoreOrder):
            with self.session() as session:
                outcomes = restore_stores(
                    _roots(session), self.db, rid, order.prune_request_id, _restore_paths(order)
                )
            return [
                RestoreReport(
                    **common, prune_request_id=order.prune_request_id, outcomes=outcomes, freed=session.freed
                ),
                self.inventory(rid),
            ]
        if isinstance(order, PurgeOrder):
            with self.session() as session:
                done = purge_stores(
                    _roots(session),
                    self.db,
                    order.retention_days,
                    only=order.prune_request_ids,
                    order_id=rid,
                )
            return [
                PurgeReport(
                    **common,
                    purged_requests=[p.request_id for p in done],
                    bytes_purged=sum(p.bytes_purged for p in done),
                    purged=done,
                    freed=session.freed,
                )
            ]
        raise TypeError(f"no handler for {type(order).__name__}")

    def pruner(self, session: AsposeSession) -> Pruner:
        return Pruner(session.get_local_path(), self.db, in_use=self.config.in_use_check)

    def inventory(self, request_id: str | None = None) -> ScannedInventory:
        with self.session() as session:
            if isinstance(self.progress, ProgressReporter):
                root = session.get_local_path()
                total = folder_bytes(root, QUARANTINE_DIR) if root.is_dir() else None
                self._begin(request_id, "hashing", total_bytes=total)
            result = scan(session, self.db, progress=self.progress)
        return inventory_report(self.config.host_name, result, request_id)

    def _begin(self, request_id: str | None, phase: Phase, **totals: int | None) -> None:
        """Count a new phase of ``request_id``'s work, if this agent reports progress."""
        if isinstance(self.progress, ProgressReporter):
            self.progress.begin(request_id, phase, **totals)

    def _on_item(self) -> Callable[[], None] | None:
        return self.progress.item if isinstance(self.progress, ProgressReporter) else None


def _request_id(message: Any) -> str | None:
    rid = message.get("request_id") if isinstance(message, dict) else None
    return rid if isinstance(rid, str) and 0 < len(rid) <= 64 else None


def _roots(session: AsposeSession) -> StoreRoots:
    return {Store.LLM: session.get_local_path(), Store.OCR: session.ocr_dir}


def _restore_paths(order: RestoreOrder) -> dict[Store, list[str] | None] | None:
    """What a restore names per store; None: everything of its prune request, in every store."""
    if order.paths is None and order.ocr_paths is None:
        return None
    return {Store.LLM: order.paths, Store.OCR: order.ocr_paths}


def register_tasks(app: Celery, config: AgentConfig) -> None:
    """Register one Celery task per AgentTask on ``app``; each takes the signed order as its one argument.

    Raises ConfigError when the trust settings are missing or bad (no pinned dashboard key, a
    key file with loose permissions): a worker that would refuse every order must not start.
    """
    trust = AgentTrust.load(config)
    # While this agent holds an enrollment token its key may not be enrolled yet, and the
    # dashboard would refuse (and flag) a progress report signed with it: progress starts once
    # an inventory, which carries the enrollment, has gone out.
    may_report_progress = [not config.enrollment_token]

    def send_progress(report: Any) -> None:
        if may_report_progress[0]:
            send_report(app, report, trust, config.ingest_queue)

    def make(name: str) -> None:
        @app.task(name=name, bind=True, acks_late=True, reject_on_worker_lost=True)
        def run(self: Task, order: Any) -> None:
            progress = ProgressReporter(config.host_name, send_progress, interval=config.progress_interval)
            agent = Agent(config, progress=progress, trust=trust)
            try:
                reports = agent.handle(name, order)
                if any(r.kind == "inventory" for r in reports):
                    may_report_progress[0] = True
                for report in agent.unqueued:  # the outbox could not take them: now or never
                    try:
                        send_report(app, report, trust, config.ingest_queue)
                    except Exception as exc:
                        log.error(
                            "report %s lost: the state folder is full and the broker away: %s",
                            report.report_id,
                            exc,
                        )
                if agent.state_error is None:
                    try:
                        flush_outbox(app, agent.db, trust, config.ingest_queue)
                    except Exception as exc:  # the outbox sender tries again
                        log.warning("outbox not flushed after %s: %s", name, exc)
            finally:
                agent.close()

    for task in AgentTask:
        make(task.value)

    # The startup inventory (at every broker (re)connect) and the heartbeat: workers/presence.py.
    install(app, config, trust)
    outbox = OutboxSender(app, config, trust)

    @worker_ready.connect(weak=False)
    def start_outbox(sender: Any = None, **_: Any) -> None:
        # In the main process, once: it sends what an earlier run left, then what fails now.
        if sender is not None and getattr(sender, "app", app) is not app:
            return
        # Logged here, not at import: the worker sets up logging only after the app exists,
        # and this is the line the approver compares with the dashboard at enrollment.
        log.info("agent %s signs with key %s", config.host_name, trust.fingerprint)
        complete, sentence = visibility()
        (log.info if complete else log.warning)("%s", sentence)
        outbox.start()
