"""The dashboard's Celery tasks: ingest of agent reports and the periodic sweeps.

Names are fixed strings: agents send reports by name (``workers.schema.INGEST_TASK``), and the
beat schedule (migration 0003) stores task names in the database. The router in
``ocrdash/celery.py`` sends ``ocrdash.ingest.*`` to ``ocrdash.ingest`` and
``ocrdash.dashboard.*`` to ``ocrdash.dashboard``; one worker consumes both.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from celery import shared_task
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


@shared_task(name=INGEST_TASK, bind=True, max_retries=None)
def ingest_report(self, report: Any, receipt: Any = None) -> str:
    """Store one agent report. Returns the outcome ("accepted", "rejected", "duplicate").

    The first attempt stamps when the report arrived (``trust.receipt_stamp``); a retry
    carries the stamp, so freshness is checked once, against the first arrival.
    """
    received_at = trust.receipt_time(report, receipt) if receipt is not None else None
    if received_at is not None and timezone.now() - received_at > INGEST_RETRY_WINDOW:
        # A stamp outlives no retry window: a captured retry message replayed later (when
        # its report id may be forgotten) is judged by today's clock, and refused as stale.
        received_at = None
    if received_at is None:
        received_at = timezone.now()
        receipt = trust.receipt_stamp(report, received_at)
    try:
        return ingest.ingest_report(report, received_at=received_at).status
    except (OperationalError, InterfaceError) as exc:
        # Only a database that went away is worth waiting for; every other failure is stored
        # as a rejected report at once, since retrying a bad payload gives the same answer.
        if timezone.now() - received_at > INGEST_RETRY_WINDOW:
            log.error("database unavailable for %s; report given up", INGEST_RETRY_WINDOW)
            return "lost"
        countdown = ingest_retry_countdown(self.request.retries)
        log.warning("database unavailable while ingesting a report; retry in %d s", countdown, exc_info=True)
        raise self.retry(kwargs={"receipt": receipt}, countdown=countdown, exc=exc) from None
    except Exception as exc:
        # A bug must not lose the report or kill the worker: keep it with the error, visible
        # on the rejected-reports page, and carry on with the next message.
        log.exception("ingest failed for a report")
        try:
            reason = f"internal error while ingesting: {type(exc).__name__}: {exc}"
            return ingest.reject(report, reason).status
        except DatabaseError:
            log.exception("could not store the failed report either")
            return "lost"


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
