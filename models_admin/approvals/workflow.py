"""The PruneRequest state machine and the host actions that send orders: the one place.

    proposed ──approve──▶ approved ──dispatch──▶ dispatched ──outcomes──▶ completed
        │                                            │                    partial
        ├──reject──▶ rejected                        └──no answer, N x─▶  failed
        ├──withdraw (its proposer)──▶ withdrawn
        └──ttl────▶ expired

Every transition locks the row (``select_for_update``), checks the current state, writes its
AuditEvent in the same transaction, and leaves slow I/O (the broker) until after commit, so a
rolled-back approval never sends.

Lock order, the same in every transaction that changes a host or its requests: the **host
row first** (``fleet.hosts.lock_host``), then the request row, then its items; the reasons
are in ``fleet/hosts.py``, which holds the host's own transitions (accept, retire, keys).
When a host is retired, ``expire_for_retired_host`` (a receiver of ``host_retired``) expires
its proposals under that host lock. A finished request of a campaign sends
``request_finished``; the campaign moves on from there (``campaigns/rollout.py``).

"A file is in at most one open prune request" is enforced by the database: the items of an
open prune request carry their host in ``open_on_host`` and a partial unique index covers
(open_on_host, path_digest); every transition out of an open state clears it
(``_close_items``). The check in ``propose`` gives the readable reason; the index is what
holds when two proposals race. The claim approved → dispatched is a conditional UPDATE:
a double click, a duplicate task or two sweepers racing all find 0 rows and do nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from workers.schema import SUCCESS_OUTCOMES, ItemOutcome, PruneMode

from .. import errors
from ..fleet import dispatch, feedback
from ..fleet.hosts import lock_host
from ..models import AuditEvent, Host, ModelFile, PruneItem, PruneRequest, restored
from ..notifications import Event
from ..notifications.send import notify_request
from ..security import roles
from ..security.roles import actor_name
from ..signals import request_finished

log = logging.getLogger(__name__)
State = PruneRequest.State
Action = AuditEvent.Action


class WorkflowError(errors.DomainError):
    """A request's transition that is not allowed; ``str()`` is fit to show the user."""


class NotAllowed(WorkflowError, errors.NotAllowed):
    pass


class WrongState(WorkflowError, errors.WrongState):
    pass


def _locked(request_id) -> PruneRequest:
    """The request's host row, then the request row, both locked (the one lock order).

    The host is read first without a lock to learn which row to lock; a request never
    changes host, so the second read finds the same one.
    """
    try:
        host_id = PruneRequest.objects.values_list("host_id", flat=True).get(id=request_id)
    except (PruneRequest.DoesNotExist, ValueError, TypeError):
        raise WorkflowError(f"no such request: {request_id}") from None
    host = lock_host(host_id)
    request = PruneRequest.objects.select_for_update().get(id=request_id)
    request.host = host
    return request


def _close_items(request_ids: Iterable) -> None:
    """The items of requests that left the open states no longer hold their files."""
    PruneItem.objects.filter(request_id__in=list(request_ids), open_on_host__isnull=False).update(
        open_on_host=None
    )


# ---------------------------------------------------------------- proposing


def keys_in_open_requests(host: Host, files: Iterable[Any]) -> set[tuple[str, str]]:
    """Which (store, path) of ``files`` (anything with ``store`` and ``path``: files, items, a
    campaign's identities) an open prune request of ``host`` already names.

    A file belongs to at most one open prune request: ``propose`` refuses the others and a
    policy's selection skips them, with this one definition of "open" for both. Store-exact:
    the same relative path in the LLM folder and in the OCR resources folder names two files.
    """
    wanted = {(f.store, f.path) for f in files}
    rows = PruneItem.objects.filter(
        request__host=host,
        request__kind=PruneRequest.Kind.PRUNE,
        request__state__in=PruneRequest.OPEN_STATES,
        path__in=[p for _, p in wanted],
    ).values_list("store", "path")
    return {key for key in rows if key in wanted}


def _open_request(files: Iterable[ModelFile | PruneItem], **fields) -> PruneRequest:
    """Create a proposed request and one item per file, copying each file's identity
    (path, size, mtime, sha256) as the approver will see it and the agent will check it.

    Runs inside the caller's transaction, after the caller's checks; the request expires
    after REQUEST_TTL_HOURS unless someone decides it.
    """
    now = timezone.now()
    request = PruneRequest.objects.create(
        created_at=now, expires_at=now + timedelta(hours=settings.OCRDASH["REQUEST_TTL_HOURS"]), **fields
    )
    holds = request.host if request.kind == PruneRequest.Kind.PRUNE else None
    try:
        # A savepoint: the unique index's refusal must leave the caller's transaction usable.
        with transaction.atomic():
            PruneItem.objects.bulk_create(
                PruneItem(
                    request=request,
                    path=f.path,
                    size=f.size,
                    mtime_ns=f.mtime_ns,
                    sha256=f.sha256,
                    known_to_aspose=f.known_to_aspose,
                    store=f.store,
                    open_on_host=holds,
                    path_digest=PruneItem.digest_of(f.path) if holds is not None else "",
                )
                for f in files
            )
    except IntegrityError:
        # Another proposal of one of these files committed first (the index, not a check, held).
        raise WorkflowError("a file of this selection is already in an open request") from None
    return request


def propose(
    *,
    host: Host,
    files: Sequence[ModelFile],
    reason: str,
    user=None,
    policy: str = "manual",
    mode: str = PruneMode.QUARANTINE.value,
) -> PruneRequest:
    """Open a request to prune ``files`` (rows of one snapshot of ``host``).

    Items copy each file's identity from that snapshot: the agent acts only if the file on
    disk still matches what the approver was shown.
    """
    reason = reason.strip()
    if not reason:
        raise WorkflowError("a request needs a reason")
    if not files:
        raise WorkflowError("select at least one file")
    if host.status == Host.Status.RETIRED:
        raise WorkflowError(f"{host.name} is retired")
    snapshots = {f.snapshot_id for f in files}
    if len(snapshots) != 1 or files[0].snapshot.host_id != host.id:
        raise WorkflowError("all files must come from one inventory of this host")
    if bad := [f.path for f in files if f.is_symlink or not f.sha256]:
        raise WorkflowError(f"cannot prune links or unhashed files: {', '.join(bad[:3])}")
    with transaction.atomic():
        host = lock_host(host)
        if host.status == Host.Status.RETIRED:
            raise WorkflowError(f"{host.name} is retired")  # retired while we were waiting
        if busy := keys_in_open_requests(host, files):
            shown = ", ".join(p if s == "llm" else f"{p} ({s})" for s, p in sorted(busy)[:3])
            raise WorkflowError(f"already in an open request: {shown}")
        request = _open_request(
            files,
            host=host,
            kind=PruneRequest.Kind.PRUNE,
            mode=mode,
            reason=reason,
            policy=policy,
            snapshot_id=snapshots.pop(),
            requested_by=user,
        )
        AuditEvent.record(
            Action.REQUEST_PROPOSED,
            actor=actor_name(user),
            host=host.name,
            obj=request,
            kind=request.kind,
            policy=policy,
            reason=reason,
            files=len(files),
            bytes=sum(f.size for f in files),
        )
        notify_request(Event.REQUEST_WAITING, request, role=roles.Action.APPROVE, exclude=[user])
    return request


def open_campaign_request(*, campaign, host: Host, files: Sequence, reason: str, policy: str) -> PruneRequest:
    """One host's part of an approved campaign, as an ordinary request: approved already (the
    campaign's one approval covers it) and dispatched when the caller's transaction commits.

    ``files`` carry identities (path, size, mtime_ns, sha256, known_to_aspose) from the
    inventory the approver saw, so the agent checks them exactly as for any request. Runs
    inside the caller's transaction (campaigns.rollout, under the campaign's row lock).
    """
    if not host.accepts_orders:
        raise NotAllowed(f"{host.name} is {host.get_status_display().lower()}: no orders are sent to it")
    if not files:
        raise WorkflowError("select at least one file")
    if busy := keys_in_open_requests(host, files):
        raise WorkflowError(f"already in an open request: {', '.join(sorted(p for _, p in busy)[:3])}")
    request = _open_request(
        files,
        host=host,
        kind=PruneRequest.Kind.PRUNE,
        mode=campaign.mode,
        reason=reason,
        policy=policy,
        requested_by=campaign.requested_by,
        campaign=campaign,
    )
    request.state = State.APPROVED
    request.decided_by = campaign.decided_by
    request.decided_at = timezone.now()
    request.decision_comment = f"approved with campaign {campaign.short_id}"
    request.save(update_fields=["state", "decided_by", "decided_at", "decision_comment"])
    for action in (Action.REQUEST_PROPOSED, Action.REQUEST_APPROVED):
        AuditEvent.record(
            action,
            actor=actor_name(
                campaign.requested_by if action == Action.REQUEST_PROPOSED else campaign.decided_by
            ),
            host=host.name,
            obj=request,
            campaign=str(campaign.id),
            policy=policy,
            files=len(files),
            bytes=sum(f.size for f in files),
        )
    transaction.on_commit(lambda: dispatch_request(request.id))
    return request


def _campaign_moves(request: PruneRequest) -> None:
    """A campaign's request finished: tell its campaign (``request_finished``; the campaign
    looks at its wave after commit, so no request lock is held while it takes its own)."""
    if request.campaign_id is not None:
        request_finished.send(sender=PruneRequest, request=request)


def propose_restore(*, prune_request: PruneRequest, user, reason: str) -> PruneRequest:
    """Open a request to move back what ``prune_request`` quarantined. It needs approval too."""
    reason = reason.strip() or f"restore of {prune_request.short_id}"
    if prune_request.kind != PruneRequest.Kind.PRUNE or prune_request.mode != PruneMode.QUARANTINE:
        raise WorkflowError("only a quarantining prune request can be restored")
    with transaction.atomic():
        lock_host(prune_request.host_id)
        # Only what is still in the folder: a file an earlier restore moved back is not there.
        items = list(prune_request.items.filter(PruneItem.in_quarantine()))
        if not items:
            raise WorkflowError("nothing of this request is in quarantine")
        if prune_request.restores.filter(state__in=PruneRequest.OPEN_STATES).exists():
            raise WorkflowError("a restore of this request is already open")
        request = _open_request(
            items,
            host=prune_request.host,
            kind=PruneRequest.Kind.RESTORE,
            mode=prune_request.mode,
            reason=reason,
            restore_of=prune_request,
            requested_by=user,
        )
        AuditEvent.record(
            Action.REQUEST_PROPOSED,
            actor=actor_name(user),
            host=request.host.name,
            obj=request,
            kind=request.kind,
            restore_of=str(prune_request.id),
            reason=reason,
            files=len(items),
        )
        notify_request(Event.REQUEST_WAITING, request, role=roles.Action.APPROVE, exclude=[user])
    return request


# ---------------------------------------------------------------- deciding


def approve(request_id, user, comment: str = "") -> PruneRequest:
    """Approve (two-person rule) and dispatch after commit."""
    expire_stale(request_id=request_id)
    with transaction.atomic():
        request = _locked(request_id)
        _check_decidable(request, user)
        if not request.host.accepts_orders:
            raise NotAllowed(
                f"{request.host.name} is {request.host.get_status_display().lower()}: accept it first"
            )
        request.state = State.APPROVED
        request.decided_by = user
        request.decided_at = timezone.now()
        request.decision_comment = comment.strip()
        request.save(update_fields=["state", "decided_by", "decided_at", "decision_comment"])
        AuditEvent.record(
            Action.REQUEST_APPROVED,
            actor=actor_name(user),
            host=request.host.name,
            obj=request,
            comment=request.decision_comment,
            requested_by=request.requested_by_name,
        )
        notify_request(Event.REQUEST_APPROVED, request, users=[request.requested_by_id])
        transaction.on_commit(lambda: dispatch_request(request.id))
    return request


def reject(request_id, user, comment: str = "") -> PruneRequest:
    expire_stale(request_id=request_id)
    with transaction.atomic():
        request = _locked(request_id)
        _check_decidable(request, user, rejecting=True)
        request.state = State.REJECTED
        request.decided_by = user
        request.decided_at = timezone.now()
        request.decision_comment = comment.strip()
        request.finished_at = request.decided_at
        request.save(update_fields=["state", "decided_by", "decided_at", "decision_comment", "finished_at"])
        _close_items([request.id])
        AuditEvent.record(
            Action.REQUEST_REJECTED,
            actor=actor_name(user),
            host=request.host.name,
            obj=request,
            comment=request.decision_comment,
        )
        notify_request(Event.REQUEST_REJECTED, request, users=[request.requested_by_id], exclude=[user])
    return request


def withdraw(request_id, user, comment: str = "") -> PruneRequest:
    """The proposer takes back a request nobody decided yet.

    Under the request's row lock, like approve and reject: a withdrawal racing an approval
    ends one way only, the second to lock finds the request no longer proposed (WrongState),
    so nothing withdrawn is ever dispatched.
    """
    expire_stale(request_id=request_id)
    with transaction.atomic():
        request = _locked(request_id)
        if request.state != State.PROPOSED:
            raise WrongState(
                f"request is {request.get_state_display().lower()}: only a proposed one can be withdrawn"
            )
        if request.requested_by_id is None or request.requested_by_id != getattr(user, "pk", None):
            raise NotAllowed("only the person who proposed a request may withdraw it")
        request.state = State.WITHDRAWN
        request.finished_at = timezone.now()
        request.decision_comment = comment.strip()
        request.save(update_fields=["state", "finished_at", "decision_comment"])
        _close_items([request.id])
        AuditEvent.record(
            Action.REQUEST_WITHDRAWN,
            actor=actor_name(user),
            host=request.host.name,
            obj=request,
            comment=request.decision_comment,
        )
    return request


def _check_decidable(request: PruneRequest, user, rejecting: bool = False) -> None:
    if request.state != State.PROPOSED:
        raise WrongState(f"request is {request.get_state_display().lower()}, not proposed")
    # Two-person rule: whoever asked for a deletion cannot also allow it. Withdrawing one's
    # own request (rejecting it) is fine.
    if not rejecting and request.requested_by_id is not None and request.requested_by_id == user.pk:
        raise NotAllowed("you proposed this request: another approver must decide")


def expire_stale(now: datetime | None = None, request_id=None) -> int:
    """Expire proposed requests past their deadline (periodic, and before every decision,
    in a transaction of its own so the expiry stays even when the decision is refused)."""
    now = now or timezone.now()
    count = 0
    due = PruneRequest.objects.filter(state=State.PROPOSED, expires_at__lte=now)
    if request_id is not None:
        due = due.filter(id=request_id)
    for request in due.select_related("host"):
        with transaction.atomic():
            lock_host(request.host_id)
            updated = PruneRequest.objects.filter(id=request.id, state=State.PROPOSED).update(
                state=State.EXPIRED, finished_at=now
            )
            if updated:
                _close_items([request.id])
                AuditEvent.record(Action.REQUEST_EXPIRED, host=request.host.name, obj=request)
                count += 1
    return count


# ---------------------------------------------------------------- dispatching


def dispatch_request(request_id) -> bool:
    """Claim an approved request and send its order. False if someone else already did."""
    now = timezone.now()
    claimed = PruneRequest.objects.filter(id=request_id, state=State.APPROVED).update(
        state=State.DISPATCHED, dispatched_at=now, dispatch_attempts=F("dispatch_attempts") + 1
    )
    if not claimed:
        return False
    _send(PruneRequest.objects.select_related("host").get(id=request_id))
    return True


def _send(request: PruneRequest) -> None:
    """Send a claimed request's order. A broker failure is recorded, never raised: the
    request stays dispatched and ``resend_unanswered`` tries again."""
    order = dispatch.build_request_order(request)
    try:
        dispatch.send_order(order)
    except dispatch.DispatchError as exc:
        AuditEvent.record(
            Action.DISPATCH_FAILED,
            host=request.host.name,
            obj=request,
            error=str(exc),
            attempt=request.dispatch_attempts,
        )
        return
    AuditEvent.record(
        Action.REQUEST_DISPATCHED,
        host=request.host.name,
        obj=request,
        attempt=request.dispatch_attempts,
        items=len(order.items)
        if hasattr(order, "items")
        else len(order.paths or []) + len(order.ocr_paths or []),
    )


def resend_unanswered(now: datetime | None = None) -> tuple[int, int]:
    """Re-send dispatched requests with no answer; fail them after the last attempt (periodic).

    Re-sending is safe because the agent is idempotent by request id. Returns (resent, failed).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(minutes=settings.OCRDASH["RESEND_AFTER_MINUTES"])
    max_attempts = settings.OCRDASH["MAX_DISPATCH_ATTEMPTS"]
    resent = failed = 0
    stale = PruneRequest.objects.filter(state=State.DISPATCHED).filter(
        Q(dispatched_at__lte=cutoff) | Q(dispatched_at__isnull=True)
    )
    for request in stale.select_related("host"):
        if request.dispatch_attempts >= max_attempts:
            if _finish_without_answer(request, now, f"no answer after {request.dispatch_attempts} attempts"):
                failed += 1
            continue
        if not request.host.accepts_orders:
            # Retired, or back to pending after its key was revoked or replaced: no order is
            # ever sent to such a host, and its answers could not be trusted anyway.
            status = request.host.get_status_display().lower()
            if _finish_without_answer(request, now, f"not re-sent: the host is {status}"):
                failed += 1
            continue
        claimed = PruneRequest.objects.filter(
            id=request.id, state=State.DISPATCHED, dispatch_attempts=request.dispatch_attempts
        ).update(dispatched_at=now, dispatch_attempts=F("dispatch_attempts") + 1)
        if claimed:
            request.refresh_from_db()
            _send(request)
            resent += 1
    return resent, failed


def _finish_without_answer(request: PruneRequest, now: datetime, reason: str) -> bool:
    with transaction.atomic():
        lock_host(request.host_id)
        updated = PruneRequest.objects.filter(id=request.id, state=State.DISPATCHED).update(
            state=State.FAILED, finished_at=now
        )
        if not updated:
            return False
        _close_items([request.id])
        request.items.filter(outcome=PruneItem.Outcome.PENDING).update(
            outcome=PruneItem.Outcome.ERROR, detail=reason, finished_at=now
        )
        AuditEvent.record(
            Action.REQUEST_FINISHED, host=request.host.name, obj=request, state=State.FAILED, reason=reason
        )
        request.refresh_from_db()
        notify_request(Event.REQUEST_PROBLEM, request, users=[request.requested_by_id, request.decided_by_id])
        _campaign_moves(request)
    return True


# ---------------------------------------------------------------- answers from the agent


# A late answer may turn these into what the agent really did: an answer is the truth about
# the disk, whenever it comes.
_LATE_STATES = (State.FAILED, State.PARTIAL)


def record_outcomes(
    request_id, outcomes: Iterable[ItemOutcome], *, report_id: str = ""
) -> PruneRequest | None:
    """Store the agent's per-item outcomes and finish the request. Call inside ingest's
    transaction (which holds the host lock).

    An answer is applied whenever it comes. To a dispatched request it is *the* answer. To a
    request already finished as failed or partial (the dashboard gave up waiting, or the agent
    gave up on some items) it is a *late* answer: items still without success take what the
    agent says, the request moves to its true state, and a ``late_answer`` event says so. A
    success outcome is never replaced by a failure (an older report arriving after a newer
    one), so a duplicate answer changes nothing and records nothing.
    """
    try:
        request = _locked(request_id)
    except WorkflowError:
        return None
    late = request.state in _LATE_STATES
    if request.state != State.DISPATCHED and not late:
        return request
    now = timezone.now()
    items = {(item.store, item.path): item for item in request.items.all()}
    agent = f"agent:{request.host.name}"
    events = []
    changed = []
    for outcome in outcomes:
        item = items.get((outcome.store.value, outcome.path))
        if item is None:
            continue  # the agent answers only for what it was sent; anything else is noise
        if late and (item.outcome in SUCCESS_OUTCOMES or item.outcome == outcome.outcome.value):
            continue
        item.outcome = outcome.outcome.value
        item.detail = outcome.detail
        item.bytes_reclaimed = outcome.bytes_reclaimed
        item.finished_at = now
        changed.append(item)
        events.append(
            AuditEvent.build(
                Action.ITEM_OUTCOME,
                actor=agent,
                host=request.host.name,
                obj=request,
                path=item.path,
                store=item.store,
                size=item.size,
                sha256=item.sha256,
                outcome=item.outcome,
                detail=item.detail,
                bytes_reclaimed=item.bytes_reclaimed,
                **({"late": True} if late else {}),
            )
        )
    if late and not changed:
        return request  # nothing new: a duplicate of an answer already applied
    AuditEvent.objects.bulk_create(events)  # one INSERT for a request of thousands of files
    for item in items.values():
        if item.outcome == PruneItem.Outcome.PENDING:
            item.outcome, item.detail, item.finished_at = PruneItem.Outcome.ERROR, "no outcome reported", now
    PruneItem.objects.bulk_update(items.values(), ["outcome", "detail", "bytes_reclaimed", "finished_at"])
    succeeded = sum(1 for i in items.values() if i.outcome in SUCCESS_OUTCOMES)
    was = request.state
    if succeeded == len(items):
        request.state = State.COMPLETED
    elif succeeded:
        request.state = State.PARTIAL
    else:
        request.state = State.FAILED
    request.finished_at = now
    request.bytes_reclaimed = sum(i.bytes_reclaimed for i in items.values())
    request.save(update_fields=["state", "finished_at", "bytes_reclaimed"])
    _close_items([request.id])
    if request.restore_of_id is not None:
        _count_restored(request.restore_of_id)
    AuditEvent.record(
        Action.LATE_ANSWER if late else Action.REQUEST_FINISHED,
        actor=agent,
        host=request.host.name,
        obj=request,
        state=request.state,
        succeeded=succeeded,
        items=len(items),
        bytes_reclaimed=request.bytes_reclaimed,
        report_id=report_id,
        **({"was": was, "changed_items": len(changed)} if late else {}),
    )
    if request.state == State.COMPLETED:
        # A campaign's part is told by the campaign's own "finished" message: a campaign over
        # 1,000 hosts must not mail its proposer 1,000 times. A part that failed is still told.
        if request.campaign_id is None:
            notify_request(Event.REQUEST_FINISHED, request, users=[request.requested_by_id])
    else:
        notify_request(Event.REQUEST_PROBLEM, request, users=[request.requested_by_id, request.decided_by_id])
    _campaign_moves(request)
    return request


def _count_restored(prune_request_id) -> None:
    """Set a prune's ``bytes_restored``: its items' bytes that a restore of it moved back
    (``models.restored``, the one rule for "restored"). Its ``bytes_in_quarantine``
    then no longer counts them, on every page, in the API and in the mails that read it, and a
    later purge, which finds only what is still in the folder, leaves nothing counted there.

    Counted anew from the items, never added to, so a repeated or late restore answer cannot
    count a file twice. Runs in the restore answer's transaction under the host's lock, which
    a purge report (the other writer of the prune's counters) takes first too.
    """
    restored_bytes = PruneItem.objects.filter(restored(), request_id=prune_request_id).aggregate(
        total=Sum("bytes_reclaimed")
    )["total"]
    PruneRequest.objects.filter(pk=prune_request_id).update(bytes_restored=restored_bytes or 0)


def record_agent_error(request_id, reason: str) -> PruneRequest | None:
    """The agent refused or failed a whole order (expired, malformed, gave up): fail it."""
    try:
        request = _locked(request_id)
    except WorkflowError:
        return None
    if request.state != State.DISPATCHED:
        return request
    _finish_without_answer(request, timezone.now(), f"agent error: {reason}")
    request.refresh_from_db()
    return request


# ---------------------------------------------------------------- host actions


def _send_host_order(host: Host, user, order, action: str) -> None:
    if not host.accepts_orders:
        raise NotAllowed(f"{host.name} is {host.get_status_display().lower()}: no orders are sent to it")
    try:
        dispatch.send_order(order)
    except dispatch.DispatchError as exc:
        raise WorkflowError(str(exc)) from exc
    AuditEvent.record(action, actor=actor_name(user), host=host.name, obj=host, request_id=order.request_id)
    feedback.asked(host, user, order.kind, order.request_id)


def ask_inventory(host: Host, user) -> None:
    """Ask a host for a fresh inventory now."""
    _send_host_order(host, user, dispatch.inventory_order(host.name), Action.INVENTORY_ASKED)


def ask_free(host: Host, user) -> None:
    """Ask a host's agent to free the OCR engine's resources now."""
    _send_host_order(host, user, dispatch.free_order(host.name), Action.FREE_ASKED)


def expire_for_retired_host(sender: Any, host: Host, **kwargs: Any) -> None:
    """A host was retired (``host_retired``, under its row lock): its proposals expire.

    Requests after the host (the lock order); ordered by id so two sweeps agree too. Approved
    and dispatched requests stay: ``resend_unanswered`` fails them, as no order is sent to a
    retired host.
    """
    proposed = list(host.prune_requests.select_for_update().filter(state=State.PROPOSED).order_by("id"))
    for request in proposed:
        request.state, request.finished_at = State.EXPIRED, timezone.now()
        request.save(update_fields=["state", "finished_at"])
        AuditEvent.record(Action.REQUEST_EXPIRED, host=host.name, obj=request, reason="host retired")
    _close_items(r.id for r in proposed)
