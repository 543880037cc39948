"""A host's page (facts, inventory, history, requests) and the actions taken from it."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Sum
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from ..approvals import workflow
from ..capacity import policies
from ..capacity import usage as capacity_usage
from ..fleet import feedback
from ..fleet.labels import format_selector
from ..forms import DiffForm, PolicyProposeForm, ProposeForm
from ..inventory import history
from ..models import ModelFile, PruneItem, PruneRequest
from ..security.roles import Action
from . import flash_error, get_host_for_user
from .fleet import presence

HISTORY_LENGTH = 20


def _policies() -> list[dict]:
    """The registered policies (name, label, description, params) for the host page."""
    return [p.as_dict() for p in policies.REGISTRY.values()]


def detail(request: HttpRequest, name: str) -> HttpResponse:
    host = get_host_for_user(request, name)
    files = (
        list(ModelFile.objects.filter(snapshot_id=host.current_snapshot_id))
        if host.current_snapshot_id
        else []
    )
    busy = set(
        PruneItem.objects.filter(
            request__host=host,
            request__kind=PruneRequest.Kind.PRUNE,
            request__state__in=PruneRequest.OPEN_STATES,
        ).values_list("store", "path")
    )
    usages = capacity_usage.usages_for(host)
    for f in files:
        # Page-only attributes for the template's rows.
        f.busy = (f.store, f.path) in busy  # type: ignore[attr-defined]
        use = usages.get((f.store, f.path))
        f.usage = use  # type: ignore[attr-defined]
        f.last_use = capacity_usage.last_use(use)  # type: ignore[attr-defined]
    in_use = [f for f in files if (u := usages.get((f.store, f.path))) is not None and u.open_by]
    snapshots = list(host.snapshots.all()[:HISTORY_LENGTH])
    requests = (
        host.prune_requests.select_related("host", "requested_by")
        .annotate(item_count=Count("items"), item_bytes=Sum("items__size"))
        .order_by("-created_at")[:15]
    )
    return render(
        request,
        "models_admin/host.html",
        {
            "host": host,
            "host_key": host.active_key,
            "new_key": host.candidate_key,
            "key_revoked": host.keys.filter(revoked_at__isnull=False).exists(),
            "presence": presence(host),
            "offline_after_minutes": settings.OCRDASH["HOST_OFFLINE_AFTER_MINUTES"],
            "labels_text": format_selector(host.labels or {}),
            "files": files,
            "in_use": in_use,
            "stores": capacity_usage.store_rows(host),
            "snapshots": snapshots,
            "changes": history.change_summaries(snapshots),
            "requests": requests,
            "policies": _policies(),
            "stale_prefix": settings.OCRDASH["STALE_PREFIX"],
            "live": feedback.host_live(host),
            "nav": "fleet",
        },
    )


def live(request: HttpRequest, name: str) -> JsonResponse:
    """The host page's live panel (orders asked, progress, last inventory/free/purge), polled."""
    host = get_host_for_user(request, name)
    context = feedback.host_live(host)
    html = render_to_string("models_admin/_host_live.html", context, request=request)
    return JsonResponse({"html": html, "busy": context["busy"]})


def diff(request: HttpRequest, name: str) -> HttpResponse:
    host = get_host_for_user(request, name)
    form = DiffForm(request.GET)
    if not form.is_valid():
        raise Http404("choose two snapshots")
    found = {s.id: s for s in host.snapshots.filter(id__in=[form.cleaned_data["a"], form.cleaned_data["b"]])}
    a, b = found.get(form.cleaned_data["a"]), found.get(form.cleaned_data["b"])
    if a is None or b is None:
        raise Http404("no such snapshot on this host")
    if (a.taken_at, a.id) > (b.taken_at, b.id):
        a, b = b, a  # always older → newer, whatever order the user picked
    return render(
        request,
        "models_admin/host_diff.html",
        {"host": host, "a": a, "b": b, "diff": history.diff_snapshots(a, b), "nav": "fleet"},
    )


@require_POST
def propose(request: HttpRequest, name: str) -> HttpResponse:
    host = get_host_for_user(request, name, Action.PROPOSE)
    current = (
        list(ModelFile.objects.filter(snapshot_id=host.current_snapshot_id).select_related("snapshot"))
        if host.current_snapshot_id is not None
        else []
    )
    form = ProposeForm(request.POST, file_ids=[f.id for f in current])
    if not form.is_valid():
        text = "; ".join(str(e) for errors in form.errors.values() for e in errors)
        messages.error(request, text.capitalize())
        return redirect("ocrdash-host", name=host.name)
    chosen = set(form.cleaned_data["files"])
    try:
        prune = workflow.propose(
            host=host,
            files=[f for f in current if f.id in chosen],
            reason=form.cleaned_data["reason"],
            user=request.user,
        )
    except workflow.WorkflowError as exc:
        flash_error(request, exc)
        return redirect("ocrdash-host", name=host.name)
    messages.success(request, f"Request {prune.short_id} proposed: an approver must now decide.")
    return redirect("ocrdash-request", request_id=prune.id)


@require_POST
def propose_by_policy(request: HttpRequest, name: str) -> HttpResponse:
    host = get_host_for_user(request, name, Action.PROPOSE)
    form = PolicyProposeForm(request.POST, policies=[(p["name"], p["label"]) for p in _policies()])
    if not form.is_valid():
        messages.error(request, "Choose a known policy.")
        return redirect("ocrdash-host", name=host.name)
    policy = policies.get_policy(form.cleaned_data["policy"])
    # Each policy's inputs are named after its parameters; empty ones take the defaults.
    params = {p.name: request.POST.get(p.name, "") for p in policy.params}
    try:
        run = policies.run_policy(
            host, policy.name, user=request.user, params=params, reason=form.cleaned_data["reason"]
        )
    except workflow.WorkflowError as exc:
        flash_error(request, exc)
        return redirect("ocrdash-host", name=host.name)
    if run.request is None:
        messages.info(request, f"{policy.label} found nothing to propose on {host.name}.")
        return redirect("ocrdash-host", name=host.name)
    count = len(run.selection.files)
    messages.success(request, f"{policy.label} proposed {count} file(s): an approver must now decide.")
    return redirect("ocrdash-request", request_id=run.request.id)


def _host_action(request: HttpRequest, name: str, action: Action, call, done: str) -> HttpResponse:
    host = get_host_for_user(request, name, action)
    try:
        call(host, request.user)
    except workflow.WorkflowError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, done.format(host=host.name))
    # Back to where the button was (a request page asks for an inventory too), if it is ours.
    back = request.POST.get("next", "")
    if back.startswith("/") and url_has_allowed_host_and_scheme(back, allowed_hosts={request.get_host()}):
        return redirect(back)
    return redirect("ocrdash-host", name=host.name)


@require_POST
def ask_inventory(request: HttpRequest, name: str) -> HttpResponse:
    return _host_action(
        request,
        name,
        Action.REQUEST_INVENTORY,
        workflow.ask_inventory,
        "Inventory asked: {host} reports when its agent has walked the model folder.",
    )


@require_POST
def ask_free(request: HttpRequest, name: str) -> HttpResponse:
    return _host_action(
        request,
        name,
        Action.REQUEST_FREE,
        workflow.ask_free,
        "Asked {host} to free the OCR engine's resources.",
    )


@require_POST
def accept(request: HttpRequest, name: str) -> HttpResponse:
    return _host_action(
        request,
        name,
        Action.MANAGE_HOSTS,
        workflow.accept_host,
        "{host} accepted: orders are now sent to it.",
    )


@require_POST
def retire(request: HttpRequest, name: str) -> HttpResponse:
    return _host_action(
        request,
        name,
        Action.MANAGE_HOSTS,
        workflow.retire_host,
        "{host} retired: hidden from the overview, its proposed requests expired.",
    )
