"""Prune requests: the list (what waits for whom) and the page an approver decides on."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Count, OuterRef, Subquery, Sum
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.views.decorators.http import require_POST

from ..approvals import workflow
from ..errors import DomainError
from ..fleet import feedback, presence
from ..forms import DecisionForm, RequestFilterForm, RestoreForm
from ..inventory import history
from ..models import PruneItem, PruneRequest, request_rank
from ..quarantine import purge as quarantine
from ..security.roles import Action
from . import flash_error, require

State = PruneRequest.State
RESTORABLE = (State.COMPLETED, State.PARTIAL)


def _get_request_for_user(request: HttpRequest, request_id, action: Action = Action.VIEW) -> PruneRequest:
    prune = get_object_or_404(
        PruneRequest.objects.select_related("host", "requested_by", "decided_by"), id=request_id
    )
    require(request, action)
    return prune


def index(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    form = RequestFilterForm(request.GET)
    # Each row's items counted by a subquery on the page's rows only (the request_id index):
    # a join of every request's items grouped before the page is cut sorted them all.
    items = PruneItem.objects.filter(request=OuterRef("pk")).order_by().values("request")
    requests = PruneRequest.objects.select_related("host", "requested_by").annotate(
        item_count=Coalesce(Subquery(items.annotate(n=Count("id")).values("n")), 0),
        item_bytes=Subquery(items.annotate(total=Sum("size")).values("total")),
        # Waiting for a person first, then in flight, then history (the request_rank_time index).
        rank=request_rank(),
    )
    if form.is_valid():
        if form.cleaned_data["state"]:
            requests = requests.filter(state=form.cleaned_data["state"])
        if form.cleaned_data["host"]:
            requests = requests.filter(host__name=form.cleaned_data["host"])
    page = Paginator(requests.order_by("rank", "-created_at"), 50).get_page(request.GET.get("page"))
    return render(request, "models_admin/requests.html", {"form": form, "page": page, "nav": "requests"})


@dataclass(frozen=True)
class ItemRow:
    """One file on the request page: the item and what the page works out about it."""

    item: PruneItem
    last_copy: bool  # no other host holds a file with this hash
    modified: datetime
    age: timedelta


def detail(request: HttpRequest, request_id: str) -> HttpResponse:
    prune = _get_request_for_user(request, request_id)
    return render(request, "models_admin/request.html", _detail_context(request, prune))


def live(request: HttpRequest, request_id) -> JsonResponse:
    """The request page's body (state, progress, outcomes), polled while the request is in flight."""
    prune = _get_request_for_user(request, request_id)
    context = _detail_context(request, prune)
    html = render_to_string("models_admin/_request_body.html", context, request=request)
    return JsonResponse({"html": html, "state": prune.state, "busy": context["busy"]})


def _detail_context(request: HttpRequest, prune: PruneRequest) -> dict:
    # With ``restored``: the files table shows each file's state now (``PruneItem.state_now``).
    items = list(PruneItem.with_restored(prune.items.all()))
    elsewhere = history.hashes_elsewhere(prune.host, (i.sha256 for i in items))
    now = timezone.now()
    rows = []
    for item in items:
        modified = datetime.fromtimestamp(item.mtime_ns / 1e9, tz=UTC)
        last_copy = prune.kind == PruneRequest.Kind.PRUNE and item.sha256 not in elsewhere
        rows.append(ItemRow(item, last_copy=last_copy, modified=modified, age=now - modified))
    own = prune.requested_by_id is not None and prune.requested_by_id == request.user.pk
    restores = list(prune.restores.order_by("-created_at"))
    # Files still in the host's quarantine folder: not purged, not moved back by a restore.
    in_quarantine = (
        prune.kind == PruneRequest.Kind.PRUNE and prune.items.filter(PruneItem.in_quarantine()).exists()
    )
    return {
        "prune": prune,
        "progress": feedback.request_progress(prune),
        "busy": prune.state in (State.APPROVED, State.DISPATCHED),
        "items": items,
        "rows": rows,
        "total_bytes": sum(i.size for i in items),
        # Two different numbers: moved aside (still on the host's disk) and given back. The
        # request's own counters, as the list, the API and the mails show them.
        "quarantined_bytes": prune.bytes_in_quarantine,
        "freed_bytes": prune.bytes_freed,
        "purgeable": in_quarantine,
        # A purge is refused while one of these is open (quarantine/purge.py): say so at the button.
        "open_restore": next((r for r in restores if r.state in PruneRequest.OPEN_STATES), None),
        "last_copies": sum(1 for row in rows if row.last_copy),
        "known_count": sum(1 for i in items if i.known_to_aspose),
        "own_request": own,
        # Outcomes exist once the order left; before that the column would only say "pending".
        "show_outcomes": prune.state in (State.DISPATCHED, State.COMPLETED, State.PARTIAL, State.FAILED),
        "restorable": in_quarantine and prune.mode == "quarantine" and prune.state in RESTORABLE,
        "restores": restores,
        "waiting": presence.waiting_note(prune, now),
        "nav": "requests",
    }


def _decide(
    request: HttpRequest, request_id, transition, done: str, action: Action = Action.APPROVE
) -> HttpResponse:
    """Approve, reject or withdraw: the same form, error handling and redirect. Withdrawing
    needs only ``Action.VIEW``: the workflow lets nobody but the proposer do it."""
    prune = _get_request_for_user(request, request_id, action)
    form = DecisionForm(request.POST)
    comment = form.cleaned_data["comment"] if form.is_valid() else ""
    try:
        transition(prune.id, request.user, comment)
    except DomainError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, done.format(host=prune.host.name))
    return redirect("ocrdash-request", request_id=prune.id)


@require_POST
def approve(request: HttpRequest, request_id) -> HttpResponse:
    return _decide(request, request_id, workflow.approve, "Approved: the order is on its way to {host}.")


@require_POST
def reject(request: HttpRequest, request_id) -> HttpResponse:
    return _decide(request, request_id, workflow.reject, "Rejected: nothing will be deleted.")


@require_POST
def withdraw(request: HttpRequest, request_id) -> HttpResponse:
    """The proposer takes the request back (workflow checks it is theirs and still proposed)."""
    return _decide(request, request_id, workflow.withdraw, "Withdrawn: nothing will be deleted.", Action.VIEW)


@require_POST
def purge(request: HttpRequest, request_id) -> HttpResponse:
    """An approver purges this request's quarantine now (two-person rule: not its proposer)."""
    prune = _get_request_for_user(request, request_id, Action.APPROVE)
    try:
        quarantine.purge_early(prune.id, request.user)
    except DomainError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, "Purge sent: the host deletes this request's quarantined files for good.")
    return redirect("ocrdash-request", request_id=prune.id)


@require_POST
def restore(request: HttpRequest, request_id) -> HttpResponse:
    prune = _get_request_for_user(request, request_id, Action.RESTORE)
    form = RestoreForm(request.POST)
    reason = form.cleaned_data["reason"] if form.is_valid() else ""
    try:
        restore_request = workflow.propose_restore(prune_request=prune, user=request.user, reason=reason)
    except DomainError as exc:
        flash_error(request, exc)
        return redirect("ocrdash-request", request_id=prune.id)
    messages.success(request, "Restore proposed: another approver must approve it.")
    return redirect("ocrdash-request", request_id=restore_request.id)
