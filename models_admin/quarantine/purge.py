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

from workers.schema import PurgedRequest, PurgeOrder, PurgeReport

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
    """Apply a purge report to each request it names, so that the request's figures are what
    the agent says about the disk.

    - A store's folder that went: its files in quarantine end ``purged``, but those the agent
      names missing (no longer in the folder when it was purged) end ``missing`` with why.
    - A store's folder still there (``kept``: the purge was cut short): its files stay
      quarantined and restorable, their detail says why.
    - ``bytes_purged`` adds what the agent freed; ``bytes_gone`` is set so that the request's
      ``bytes_in_quarantine`` is what the agent says is left (the kept folders' bytes, nothing
      of a folder that went). It is set from the counters, never added to: a repeated report
      changes nothing, and the purge that later finishes a kept folder counts nothing twice.

    The items' and the request's ``finished_at`` stay when the prune finished (the reports
    place a file in the week it left its folder, and a purge days later must not move it);
    the purge's own time is the request's ``purged_at`` and its audit event.

    Runs inside ingest's transaction with the host row locked, then locks each request row in
    id order. The race is a restore's answer for the same request (``record_outcomes``, which
    recounts ``bytes_restored``): it takes the host lock first too, so the two are applied one
    after the other, and whichever comes second reads the other's items and counters.
    """
    freed = {p.request_id: p for p in report.purged}
    for rid in report.purged_requests:
        freed.setdefault(rid, PurgedRequest(request_id=rid, bytes_purged=0))
    # A purge that did not run to its end names what is still there, per store: those items
    # stay quarantined (restorable, counted in quarantine) even when the other store's went.
    kept: dict[str, dict[str, int]] = {}
    for left in report.kept:
        stores = kept.setdefault(left.request_id, {})
        stores[left.store.value] = stores.get(left.store.value, 0) + left.bytes_left
    events = []
    for rid in sorted(set(freed) | set(kept)):
        try:
            request_uuid = uuid.UUID(hex=rid)
        except ValueError:
            continue  # another agent's folder name: nothing of ours
        request = PruneRequest.objects.select_for_update().filter(id=request_uuid, host=host).first()
        if request is None:
            continue
        event = _apply_purge(request, freed.get(rid), kept.get(rid, {}), report.detail, host, now)
        if event is not None:
            events.append(event)
    return events


MISSING_DETAIL = (
    "not in the quarantine folder when it was purged (deleted or lost outside ocrdash): not freed by it"
)


def _apply_purge(
    request: PruneRequest,
    purged: PurgedRequest | None,
    kept: dict[str, int],
    why: str,
    host: Host,
    now: datetime,
) -> AuditEvent | None:
    """``record_purge`` for one request (its row locked): ``purged`` what went, if anything;
    ``kept`` the bytes still there per store."""
    # A file a restore moved back was not in the folder the purge deleted: it stays as it is
    # (quarantined, then restored), neither purged nor missing.
    items = list(request.items.filter(PruneItem.in_quarantine()))
    went = [i for i in items if purged is not None and i.store not in kept]
    named = {(m.store.value, m.path) for m in purged.missing} if purged is not None else set()
    missing = [i for i in went if (i.store, i.path) in named]
    stopped = [i for i in items if i.store in kept]
    PruneItem.objects.filter(pk__in=[i.pk for i in went if i not in missing]).update(outcome=Outcome.PURGED)
    PruneItem.objects.filter(pk__in=[i.pk for i in missing]).update(
        outcome=Outcome.MISSING, detail=MISSING_DETAIL
    )
    if stopped:
        detail = f"the purge did not finish, still in quarantine: {why or 'no reason given'}"
        PruneItem.objects.filter(pk__in=[i.pk for i in stopped]).update(detail=detail[:2000])
    if not went and not stopped:
        return None  # a repeated report, or a restore came first
    size = purged.bytes_purged if purged is not None and went else 0
    left = sum(kept.values()) + sum(i.bytes_reclaimed for i in items if i not in went and i.store not in kept)
    if went:
        request.bytes_purged += size
        request.purged_at = now
    request.bytes_gone = max(
        request.bytes_reclaimed - request.bytes_restored - request.bytes_purged - left, 0
    )
    request.save(update_fields=["bytes_purged", "purged_at", "bytes_gone"])
    if not went:
        return None  # nothing went: the host's purge event says it did not finish
    short = sum(i.bytes_reclaimed for i in went) - size
    return AuditEvent.build(
        Action.QUARANTINE_PURGED,
        actor=f"agent:{host.name}"[:150],
        host=host.name,
        obj=request,
        items=len(went) - len(missing),
        bytes_purged=size,
        # Less freed than was in quarantine: files the agent named missing, or a shortfall it
        # could not name (no record of the request on that host).
        **({"missing": len(missing)} if missing else {}),
        **({"bytes_missing": short} if short > 0 else {}),
    )
