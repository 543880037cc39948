"""The dashboard's Celery tasks: ingest of agent reports and the periodic sweeps.

Names are fixed strings: agents send reports by name (``workers.schema.INGEST_TASK``), and the
beat schedule (migration 0003) stores task names in the database. The router in
``ocrdash/celery.py`` sends ``ocrdash.ingest.*`` to ``ocrdash.ingest`` and
``ocrdash.dashboard.*`` to ``ocrdash.dashboard``; one worker consumes both.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import groupby
from typing import Any

from celery import shared_task
from celery_batches import Batches, SimpleRequest
from celery_batches.trace import apply_batches_task
from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.utils import timezone

from workers.schema import INGEST_TASK

from . import ingest
from .approvals import workflow
from .fleet import trust
from .models import Host
from .notifications import tasks as _notification_tasks  # noqa: F401  (registers ocrdash.notify.*)
from .task_names import (
    CAMPAIGNS_TASK,
    COMPACT_TASK,
    EXPIRE_TASK,
    FLEET_INVENTORY_TASK,
    HOST_INVENTORY_TASK,
    POLICY_TASK,
    PURGE_TASK,
    RESEND_TASK,
)

log = logging.getLogger(__name__)


# How long an ingest retries while the database is away, and the longest wait between two
# tries. Fixed steps, no jitter: 5, 10, 20, 40, then every 60 s, for an hour (jittered
# backoff once used up 8 retries in 97 s of a 2-minute outage).
INGEST_RETRY_WINDOW = timedelta(hours=1)
INGEST_RETRY_MAX_SECONDS = 60


def ingest_retry_countdown(retries: int) -> int:
    return min(5 * 2**retries, INGEST_RETRY_MAX_SECONDS)


class IngestBatches(Batches):
    """celery-batches' Batches, with what "nothing lost" needs from a batch of late-acked reports.

    Batches acks a late-acked batch once the pool returns, even when the batch raised, and
    leaves its messages unacked for good when the pool process dies. Here a batch that
    raised or whose process was lost is rejected back onto the queue (redelivered at once,
    like a single task with ``reject_on_worker_lost``): the reports of it that were already
    stored come back as duplicates (each report is claimed by id in its own transaction,
    ingest.py), the rest are stored then.
    """

    abstract = True

    def flush(self, requests: Collection[Any]) -> Any:
        simple = ([SimpleRequest.from_request(r) for r in requests],)

        def returned(result: Any) -> None:
            if result is None:  # apply_batches_task logged what the batch raised
                requeue("the batch raised")
                return
            for request in requests:
                request.acknowledge()

        def requeue(why: Any) -> None:
            log.error("ingest batch of %d reports not finished (%s); putting it back", len(requests), why)
            for request in requests:
                request.reject(requeue=True)

        return self._pool.apply_async(
            apply_batches_task, (self, simple, 0, None), callback=returned, error_callback=requeue
        )


@shared_task(
    name=INGEST_TASK,
    base=IngestBatches,
    bind=True,
    flush_every=settings.OCRDASH["INGEST_BATCH"],
    flush_interval=settings.OCRDASH["INGEST_BATCH_SECONDS"],
)
def ingest_report(self: Batches, requests: list[SimpleRequest]) -> list[str]:
    """Store a batch of agent reports; returns their outcomes, in order.

    One message per report, as agents send them; the worker hands them to this task up to
    ``OCRDASH_INGEST_BATCH`` at a time (or whatever came within ``OCRDASH_INGEST_BATCH_SECONDS``),
    so a report costs one trip through the pool instead of a task of its own. Each report
    is still claimed, applied and committed alone: one bad report changes nothing for the
    others, and a batch redelivered whole stores nothing twice. Heartbeats next to each other
    in the batch are written by one UPDATE (ingest.ingest_heartbeats).
    """
    messages = [Message(r.args[0] if r.args else None, r.kwargs, r.delivery_info) for r in requests]
    outcomes = ingest_messages(messages)
    log.info(
        "ingested a batch of %d reports: %s",
        len(outcomes),
        ", ".join(f"{n} {status}" for status, n in sorted(Counter(outcomes).items())),
    )
    return outcomes


@dataclass
class Message:
    """One ingest message: the signed report, the task's kwargs (a retry's receipt and
    attempt) and where it came from (a retry goes back to the same queue)."""

    report: Any
    options: dict[str, Any] = field(default_factory=dict)
    delivery_info: dict[str, Any] | None = None

    @property
    def is_heartbeat(self) -> bool:
        return isinstance(self.report, dict) and self.report.get("kind") == "heartbeat"


def ingest_messages(messages: list[Message]) -> list[str]:
    """Each message's outcome: "accepted", "rejected", "duplicate", "retry" or "lost"."""
    outcomes: list[str] = []
    for is_beat, run in groupby(messages, key=lambda m: m.is_heartbeat):
        group = list(run)
        if is_beat and len(group) > 1:
            outcomes += _ingest_beats(group)
        else:
            outcomes += [ingest_one(m) for m in group]
    return outcomes


def ingest_one(message: Message) -> str:
    """One report: stored, refused, or (the database away) sent again with a countdown."""
    received_at, receipt = _arrival(message)
    try:
        return ingest.ingest_report(message.report, received_at=received_at).status
    except (OperationalError, InterfaceError):
        # Only a database that went away is worth waiting for; every other failure is stored
        # as a rejected report at once, since retrying a bad payload gives the same answer.
        return _retry(message, received_at, receipt)
    except Exception as exc:
        # A bug must not lose the report or kill the worker: keep it with the error, visible
        # on the rejected-reports page, and carry on with the next message.
        log.exception("ingest failed for a report")
        try:
            reason = f"internal error while ingesting: {type(exc).__name__}: {exc}"
            return ingest.reject(message.report, reason).status
        except DatabaseError:
            log.exception("could not store the failed report either")
            return "lost"


def _ingest_beats(group: list[Message]) -> list[str]:
    """Neighbouring heartbeats in one UPDATE; should that fail, each the single way (which
    retries, or keeps a rejection, per beat)."""
    arrivals = [_arrival(m) for m in group]
    try:
        results = ingest.ingest_heartbeats(
            [(m.report, at) for m, (at, _) in zip(group, arrivals, strict=True)]
        )
    except Exception:
        log.warning("grouped heartbeats failed; taking them one by one", exc_info=True)
        return [ingest_one(m) for m in group]
    return [result.status for result in results]


def _arrival(message: Message) -> tuple[datetime, Any]:
    """When the report first arrived, and the signed receipt that says so.

    The first attempt stamps the arrival (``trust.receipt_stamp``); a retry carries the stamp
    (``options["receipt"]``), so freshness is checked once, against the first arrival.
    """
    receipt = message.options.get("receipt")
    received_at = trust.receipt_time(message.report, receipt) if receipt is not None else None
    if received_at is not None and timezone.now() - received_at > INGEST_RETRY_WINDOW:
        # A stamp outlives no retry window: a captured retry message replayed later (when
        # its report id may be forgotten) is judged by today's clock, and refused as stale.
        received_at = None
    if received_at is None:
        received_at = timezone.now()
        receipt = trust.receipt_stamp(message.report, received_at)
    return received_at, receipt


def _retry(message: Message, received_at: datetime, receipt: Any) -> str:
    """What Task.retry does for a single task: a copy with a countdown, to the queue the
    report came from. The message in hand is acked with its batch only after the copy is
    sent; should sending fail, the batch raises and goes back onto the queue whole."""
    if timezone.now() - received_at > INGEST_RETRY_WINDOW:
        log.error("database unavailable for %s; report given up", INGEST_RETRY_WINDOW)
        return "lost"
    attempt = int(message.options.get("attempt") or 0)
    countdown = ingest_retry_countdown(attempt)
    report_id = message.report.get("report_id") if isinstance(message.report, dict) else None
    log.warning(
        "database unavailable while ingesting report %s; retry: Retry in %ds",
        report_id,
        countdown,
        exc_info=True,
    )
    queue = (message.delivery_info or {}).get("routing_key")
    ingest_report.apply_async(
        args=[message.report],
        kwargs={"receipt": receipt, "attempt": attempt + 1},
        countdown=countdown,
        **({"queue": queue} if queue else {}),
    )
    return "retry"


@shared_task(name=EXPIRE_TASK)
def expire_stale() -> int:
    """Expire proposed requests nobody decided on in time."""
    return workflow.expire_stale()


@shared_task(name=RESEND_TASK)
def resend_unanswered() -> list[int]:
    """Re-send dispatched orders without an answer; fail them after the last attempt."""
    resent, failed = workflow.resend_unanswered()
    if resent or failed:
        log.info("resent %d unanswered orders, gave up on %d", resent, failed)
    return [resent, failed]


@shared_task(name=FLEET_INVENTORY_TASK)
def fleet_inventory() -> dict[str, int]:
    """Ask every active host for a fresh inventory (actor "system").

    One host whose order cannot be sent does not stop the others; the failure is logged and
    the next run asks again. Pending and retired hosts get nothing (workflow refuses them too).
    """
    asked = failed = 0
    for host in Host.objects.filter(status=Host.Status.ACTIVE).iterator():
        try:
            workflow.ask_inventory(host, None)
            asked += 1
        except workflow.WorkflowError as exc:
            failed += 1
            log.warning("scheduled inventory of %s not sent: %s", host.name, exc)
    return {"asked": asked, "failed": failed}


# ------------------------------------------------ history (schedules.py, inventory/compaction.py)


@shared_task(name=HOST_INVENTORY_TASK)
def host_inventory(host: str) -> str:
    """A per-host schedule (set on the settings page) asks this host for an inventory.

    A host that was retired or deleted since the schedule was saved ends quietly: beat keeps
    firing until an approver removes the schedule, and that is not an error worth a retry.
    """
    found = Host.objects.filter(name=host).first()
    if found is None or not found.accepts_orders:
        return "skipped"
    try:
        workflow.ask_inventory(found, None)
    except workflow.WorkflowError as exc:
        log.warning("scheduled inventory of %s not sent: %s", host, exc)
        return "failed"
    return "asked"


@shared_task(name=COMPACT_TASK)
def compact_snapshots(**retention: int) -> dict[str, int]:
    """Thin old snapshots with the retention stored in this task's kwargs (settings page)."""
    from .inventory import compaction  # imported here to keep this addition in one place

    return compaction.compact_snapshots(retention=compaction.Retention(**retention))


@shared_task(name=CAMPAIGNS_TASK)
def advance_campaigns() -> int:
    """Expire stale campaign proposals and move running campaigns on (migration 0017: every
    minute). Waves also move as soon as a campaign's request finishes; this catches the rest
    (a host retired mid-wave, a lost after-commit call)."""
    from .campaigns import rollout

    return rollout.advance_all()


@shared_task(name=PURGE_TASK)
def purge_quarantine(retention_days: float | None = None) -> dict[str, int]:
    """Send purge orders for quarantines past the retention (kwargs: the settings page's days)."""
    from .quarantine import purge as quarantine

    return quarantine.send_due_purges(retention_days)


@shared_task(name=POLICY_TASK)
def scheduled_policy(
    policy: str, host: str = "", group: str = "", params: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """A capacity policy schedule (capacity/scheduled.py): propose on its host or group's hosts."""
    from .capacity import scheduled

    return scheduled.run_schedule(policy, host=host, group=group, params=params)
