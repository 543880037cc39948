"""The quarantine's end: purge orders after the retention, an approver's early purge, and
what a purge report changes.

A quarantined file still takes its bytes on the host's disk: only a purge frees them. So a
request keeps two numbers apart, ``bytes_reclaimed`` (moved out of the model folder, or
deleted at once) and ``bytes_purged`` (gone from the disk by a purge), and its items end
``purged`` once their request's quarantine folder is deleted.

- ``send_due_purges`` (the beat task ``ocrdash.dashboard.purge_quarantine``, daily) sends
  each active host one purge order naming its requests whose files have been in quarantine
  longer than the retention (OCRDASH_QUARANTINE_DAYS, or the days saved on the settings page).
- ``purge_early`` lets an approver purge one request's quarantine now; by the two-person rule,
  not the person who asked for the request.
- ``record_purge`` applies a PurgeReport inside ingest's transaction (host row locked).

A request with an open restore (proposed, approved or dispatched: asked and not answered yet)
gets no purge order: a purge deletes the request's whole folder, so it cannot leave out the
files a restore is to move back, and the agent may run the two orders in either order. The
people who asked for those files back (and the approver who agreed) expect them back, not a
purge that makes their decision moot; the purge waits for the restore's answer (or its
withdrawal, rejection or expiry) instead. See ``open_restore``.
"""

from __future__ import annotations

import logging
import uuid
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from workers.schema import PurgeOrder, PurgeReport

from ..approvals.workflow import NotAllowed, WorkflowError, WrongState
from ..fleet import dispatch
from ..fleet.hosts import lock_host
from ..models import AuditEvent, Host, PruneItem, PruneRequest
from ..security.roles import actor_name

log = logging.getLogger(__name__)
Action = AuditEvent.Action
Outcome = PruneItem.Outcome


def retention_days() -> float:
    return float(settings.OCRDASH["QUARANTINE_DAYS"])


def in_quarantine(host: Host | None = None) -> QuerySet[PruneRequest]:
    """Prune requests with at least one file still in quarantine (``PruneItem.in_quarantine``):
    one whose quarantined files were all restored has nothing there to purge."""
    found = PruneRequest.objects.filter(
        Exists(PruneItem.objects.filter(PruneItem.in_quarantine()).filter(request=OuterRef("pk"))),
        kind=PruneRequest.Kind.PRUNE,
    )
    return found.filter(host=host) if host is not None else found


def open_restore() -> Exists:
    """A restore of the (outer) prune request is open: asked and not answered yet. Such a
    request is not purged, neither early nor by the retention (the module's docstring)."""
    return Exists(
        PruneRequest.objects.filter(
            restore_of=OuterRef("pk"), kind=PruneRequest.Kind.RESTORE, state__in=PruneRequest.OPEN_STATES
        )
    )


def due_requests(host: Host, days: float, now: datetime | None = None) -> list[PruneRequest]:
    """Requests of ``host`` whose quarantine is older than ``days`` (by when they finished),
    but those with an open restore: they wait for its answer and are due again on a later run."""
    cutoff = (now or timezone.now()) - timedelta(days=days)
    found = in_quarantine(host).filter(finished_at__lte=cutoff).annotate(restoring=open_restore())
    due: list[PruneRequest] = []
    for request in found.order_by("finished_at", "id"):
        if request.restoring:
            log.info("purge of %s on %s waits: a restore of it is open", request.short_id, host.name)
        else:
            due.append(request)
    return due


def _order(host: Host, requests: list[PruneRequest], days: float) -> PurgeOrder:
    return PurgeOrder(
        host=host.name,
        request_id=uuid.uuid4().hex,
        expires_at=timezone.now() + timedelta(minutes=settings.OCRDASH["ORDER_TTL_MINUTES"]),
        retention_days=days,
        prune_request_ids=[r.id.hex for r in requests],
    )


def _send(host: Host, requests: list[PruneRequest], days: float, user, early: bool) -> PurgeOrder:
    order = _order(host, requests, days)
    try:
        dispatch.send_order(order)
    except dispatch.DispatchError as exc:
        raise WorkflowError(str(exc)) from exc
    AuditEvent.record(
        Action.PURGE_ASKED,
        actor=actor_name(user),
        host=host.name,
        obj=requests[0] if early else host,
        request_id=order.request_id,
        prune_requests=[r.id.hex for r in requests[:50]],
        retention_days=days,
        early=early,
    )
    return order


def send_due_purges(days: float | None = None, now: datetime | None = None) -> dict[str, int]:
    """Send every active host a purge order for its requests past the retention (periodic).

    One host whose order cannot be sent does not stop the others; the next run asks again.
    """
    days = retention_days() if days is None else days
    sent = failed = 0
    for host in Host.objects.filter(status=Host.Status.ACTIVE).order_by("name"):
        due = due_requests(host, days, now)
        if not due:
            continue
        try:
            _send(host, due, days, None, early=False)
            sent += 1
        except WorkflowError:
            failed += 1
    return {"sent": sent, "failed": failed}


def purge_early(request_id, user) -> PurgeOrder:
    """An approver empties one request's quarantine now, whatever its age (cannot be undone).

    Two-person rule: whoever asked for the request may not also destroy its only copy.

    Refused while a restore of the request is open (``open_restore``). The race: a restore
    proposed or approved at the same moment as this purge. Both take the host's row lock
    first (``propose_restore`` and ``approve`` through ``workflow._locked``), and the check
    and the order are made under it, so one of the two sees the other: either this purge is
    refused, or the restore is proposed after the purge order left (the agent then answers
    each file it no longer found as missing: an order already sent is not called back).
    """
    request = PruneRequest.objects.select_related("host").filter(id=request_id).first()
    if request is None:
        raise WorkflowError(f"no such request: {request_id}")
    if request.requested_by_id is not None and request.requested_by_id == getattr(user, "pk", None):
        raise NotAllowed("you proposed this request: another approver must purge it")
    with transaction.atomic():
        host = lock_host(request.host_id)
        if not host.accepts_orders:
            raise NotAllowed(f"{host.name} is {host.get_status_display().lower()}: no orders are sent to it")
        if not request.items.filter(PruneItem.in_quarantine()).exists():
            raise WorkflowError("nothing of this request is in quarantine")
        restore = request.restores.filter(state__in=PruneRequest.OPEN_STATES).order_by("created_at").first()
        if restore is not None:
            log.info(
                "early purge of %s on %s refused: restore %s is open",
                request.short_id,
                host.name,
                restore.short_id,
            )
            raise WrongState(
                f"a restore {restore.short_id} of this request is open "
                f"({restore.get_state_display().lower()}): purging now would delete the files it is to move "
                "back. Purge once the restore is answered, or withdrawn or rejected"
            )
        return _send(host, [request], 0, user, early=True)


def record_purge(host: Host, report: PurgeReport, now: datetime) -> list[AuditEvent]:
    """Mark the items of every purged request ``purged`` and count what the disk got back.

    The items' and the request's ``finished_at`` stay when the prune finished (the reports
    place a file in the week it left its folder, and a purge days later must not move it);
    the purge's own time is the request's ``purged_at`` and its audit event.
    """
    freed = {p.request_id: p.bytes_purged for p in report.purged}
    for rid in report.purged_requests:
        freed.setdefault(rid, 0)
    # A purge that did not run to its end names what is still there, per store: those items
    # stay quarantined (restorable, counted in quarantine) even when the other store's went.
    kept: dict[str, set[str]] = {}
    for left in report.kept:
        kept.setdefault(left.request_id, set()).add(left.store.value)
    events = []
    for rid, size in freed.items():
        try:
            request_uuid = uuid.UUID(hex=rid)
        except ValueError:
            continue  # another agent's folder name: nothing of ours
        request = PruneRequest.objects.select_for_update().filter(id=request_uuid, host=host).first()
        if request is None:
            continue
        # A file a restore moved back was not in the folder the purge deleted: it stays as
        # it is (quarantined, then restored), not purged.
        count = (
            request.items.filter(PruneItem.in_quarantine())
            .exclude(store__in=kept.get(rid, ()))
            .update(outcome=Outcome.PURGED)
        )
        if not count:
            continue  # a repeated report, or a restore came first
        request.bytes_purged += size
        request.purged_at = now
        request.save(update_fields=["bytes_purged", "purged_at"])
        events.append(
            AuditEvent.build(
                Action.QUARANTINE_PURGED,
                actor=f"agent:{host.name}"[:150],
                host=host.name,
                obj=request,
                items=count,
                bytes_purged=size,
            )
        )
    return events
