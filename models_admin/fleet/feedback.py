"""Live feedback: what an order a person asked for is doing now, and how far long work has got.

- ``asked``: an inventory or free a person asked for becomes a HostAction (asked).
- ``apply_progress``: a ProgressReport (ingest's UNCLAIMED path, like a heartbeat) upserts
  the one Progress row of its order and moves its HostAction to running. No received-report
  row, no audit event: progress is a gauge, a few per minute of long work, and the order's
  final report is the history.
- ``answered``: the final report of an order finishes its Progress and its HostAction, with
  the result in words ("12 files, 8.5 GB", or the agent's error).
- ``host_live`` / ``request_live``: what the host and request pages poll.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.template.defaultfilters import filesizeformat
from django.utils import timezone

from workers.schema import (
    ErrorReport,
    FreeReport,
    InventoryReport,
    ModelDirState,
    ProgressReport,
    PurgeReport,
)

from ..models import AuditEvent, Host, HostAction, HostKey, Progress, PruneRequest

log = logging.getLogger(__name__)
State = HostAction.State
# Progress not updated for this long is shown as stalled and no longer counts as "working".
STALE_PROGRESS = timedelta(minutes=2)


def asked(host: Host, user, kind: str, request_id: str) -> None:
    """Record an order a person sent (the scheduler's hourly inventories are not shown)."""
    if user is None:
        return
    HostAction.objects.create(host=host, kind=kind, request_id=request_id, asked_by=user.get_username())


def apply_progress(report: ProgressReport, now=None, key: HostKey | None = None) -> tuple[str, str]:
    """Keep the latest progress of one order (ingest's UNCLAIMED path: authenticated, no
    ReceivedReport row, no host lock, no audit event). Returns (status, reason) for ingest.

    Only a newer report moves the bar, and never after the order finished: reports arrive out
    of order (two ingest workers) or after the final one, and a replayed one is simply old.
    ``key``, the key that signed it, must still be the host's active one (it may come from
    ingest's cache of keys): the host is looked up with it.
    """
    now = now or timezone.now()
    hosts = Host.objects.filter(name=report.host).exclude(status=Host.Status.RETIRED)
    if key is not None:
        hosts = hosts.filter(keys__id=key.pk, keys__revoked_at__isnull=True, keys__candidate=False)
    host = hosts.first()
    if host is None or not report.request_id:
        return "duplicate", "no such host or order: progress dropped"
    fields = {
        "phase": report.phase,
        "done_bytes": report.done_bytes,
        "total_bytes": report.total_bytes,
        "done_items": report.done_items,
        "total_items": report.total_items,
        "eta_seconds": report.eta_seconds,
        "sent_at": report.sent_at,
        "updated_at": now,
    }
    with transaction.atomic():
        moved = Progress.objects.filter(
            request_id=report.request_id, host=host, finished_at__isnull=True, sent_at__lt=report.sent_at
        ).update(**fields)
        if not moved:
            if Progress.objects.filter(request_id=report.request_id).exists():
                return "duplicate", "older than the progress already shown"
            try:
                with transaction.atomic():  # the other ingest worker may create it first
                    Progress.objects.create(request_id=report.request_id, host=host, **fields)
            except IntegrityError:
                return "duplicate", "another report of this order came first"
        HostAction.objects.filter(request_id=report.request_id, host=host, state=State.ASKED).update(
            state=State.RUNNING
        )
    return "accepted", ""


def answered(host: Host, report) -> None:
    """The final report of an order arrived: finish its progress and its HostAction. Call in
    ingest's transaction (so it commits with the report, or not at all)."""
    rid = report.request_id
    if not rid or isinstance(report, ProgressReport):
        return
    now = timezone.now()
    Progress.objects.filter(request_id=rid, host=host, finished_at__isnull=True).update(finished_at=now)
    result = _result(report)
    if result is None:
        return
    state, text = result
    HostAction.objects.filter(request_id=rid, host=host, state__in=[State.ASKED, State.RUNNING]).update(
        state=state, result=text[:500], finished_at=now
    )


def _result(report) -> tuple[str, str] | None:
    match report:
        case InventoryReport():
            if report.facts.model_dir_state != ModelDirState.OK:
                return State.FAILED, report.facts.model_dir_error or "the model folder is missing"
            size = sum(f.size for f in report.files)
            return State.DONE, f"{len(report.files)} file(s), {filesizeformat(size)}"
        case FreeReport():
            if report.freed:
                return State.DONE, "the OCR engine's resources were freed"
            return State.FAILED, "the OCR engine's resources could not be freed"
        case PurgeReport() if report.kept or report.detail:
            return State.FAILED, (
                f"the purge did not finish: {report.detail or 'stopped'}; "
                f"{len(report.purged_requests)} quarantined request(s) purged, "
                f"{filesizeformat(report.bytes_purged)} freed; "
                f"{len({k.request_id for k in report.kept})} still in quarantine"
            )
        case PurgeReport():
            return State.DONE, (
                f"{len(report.purged_requests)} quarantined request(s) purged, "
                f"{filesizeformat(report.bytes_purged)} freed"
            )
        case ErrorReport():
            return State.FAILED, report.reason
    return None


# ---------------------------------------------------------------- what the pages poll


def host_live(host: Host) -> dict:
    """Context of the host page's live panel, and whether anything is in flight (poll faster)."""
    now = timezone.now()
    ttl = timedelta(minutes=settings.OCRDASH["ORDER_TTL_MINUTES"])
    actions = list(host.actions.all()[:5])
    # Orders that expired unanswered: said so instead of spinning forever.
    overdue = {a.pk for a in actions if a.state in (State.ASKED, State.RUNNING) and now - a.asked_at > ttl}
    working = [
        p
        for p in Progress.objects.filter(host=host, finished_at__isnull=True).order_by("-updated_at")[:5]
        if now - p.updated_at <= STALE_PROGRESS
    ]
    last = {
        "inventory": host.snapshots.order_by("-last_seen_at").first(),
        "free": AuditEvent.objects.filter(host=host.name, action=AuditEvent.Action.RESOURCES_FREED).first(),
        "purge": AuditEvent.objects.filter(
            host=host.name, action=AuditEvent.Action.QUARANTINE_PURGED
        ).first(),
    }
    # A request on its way to the host counts too: its answer changes the files table, which the
    # page then fetches within a second instead of at the next slow poll.
    prune_sent = PruneRequest.objects.filter(
        host=host, state=PruneRequest.State.DISPATCHED, dispatched_at__gt=now - ttl
    ).exists()
    busy = (
        bool(working)
        or prune_sent
        or any(a.state in (State.ASKED, State.RUNNING) and a.pk not in overdue for a in actions)
    )
    return {
        "host": host,
        "actions": actions,
        "overdue": overdue,
        "working": working,
        "last": last,
        "busy": busy,
    }


def request_progress(request: PruneRequest) -> Progress | None:
    if request.state != PruneRequest.State.DISPATCHED:
        return None
    return Progress.objects.filter(
        request_id=request.id.hex, host=request.host, finished_at__isnull=True
    ).first()
