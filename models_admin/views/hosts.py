"""A host's page (facts, inventory, history, requests) and the actions taken from it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.db.models import Count, Sum
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from ..approvals import workflow
from ..capacity import forecast as capacity_forecast
from ..capacity import policies
from ..capacity import usage as capacity_usage
from ..capacity import watermarks as capacity_watermarks
from ..errors import DomainError
from ..fleet import feedback, hosts
from ..fleet.labels import format_selector
from ..forms import DiffForm, PolicyProposeForm, ProposeForm
from ..inventory import history
from ..models import Host, ModelFile, PruneItem, PruneRequest
from ..security.roles import Action
from . import flash_error, flash_form_errors, get_host_for_user
from .fleet import presence

HISTORY_LENGTH = 20


def _policies(host: Host | None = None, marks: capacity_watermarks.Marks | None = None) -> list[dict]:
    """The registered policies (name, label, description, params) for the host page, with
    ``host``'s own defaults (its watermark's ``marks``, where the page has read them) where a
    rule has them."""
    rules = policies.REGISTRY.values()
    return [p.as_dict(p.defaults_for(host, marks) if host is not None else None) for p in rules]


@dataclass(frozen=True)
class HostFiles:
    """The host page's model-files table, its "in use now" list, and a version that changes
    whenever the table would: a new or re-seen inventory (usage and every time in the table
    come with it), or a file entering or leaving an open request. The live poll sends the
    version it shows and gets the table again only when it differs."""

    files: list[ModelFile]
    in_use: list[ModelFile]
    version: str


def host_files(host: Host) -> HostFiles:
    busy = sorted(
        PruneItem.objects.filter(
            request__host=host,
            request__kind=PruneRequest.Kind.PRUNE,
            request__state__in=PruneRequest.OPEN_STATES,
        ).values_list("store", "path")
    )
    snapshot = host.current_snapshot
    seen = snapshot.last_seen_at.isoformat() if snapshot is not None else ""
    digest = hashlib.sha256(repr((host.current_snapshot_id, seen, host.model_dir_state, busy)).encode())
    files = list(ModelFile.objects.filter(snapshot=snapshot)) if snapshot is not None else []
    held = set(busy)
    usages = capacity_usage.usages_for(host)
    for f in files:
        # Page-only attributes for the template's rows.
        f.busy = (f.store, f.path) in held  # type: ignore[attr-defined]
        use = usages.get((f.store, f.path))
        f.usage = use  # type: ignore[attr-defined]
        f.last_use = capacity_usage.last_use(use)  # type: ignore[attr-defined]
    in_use = [f for f in files if (u := usages.get((f.store, f.path))) is not None and u.open_by]
    return HostFiles(files, in_use, digest.hexdigest()[:16])


def detail(request: HttpRequest, name: str) -> HttpResponse:
    host = get_host_for_user(request, name)
    table = host_files(host)
    snapshots = list(host.snapshots.all()[:HISTORY_LENGTH])
    watermark = capacity_watermarks.marks_for(host)  # shown by the chart and the policy form
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
            "files": table.files,
            "in_use": table.in_use,
            "files_version": table.version,
            "stores": capacity_usage.store_rows(host),
            "disk_chart": capacity_forecast.chart_data(host),
            "watermark": watermark,
            "snapshots": snapshots,
            "changes": history.change_summaries(snapshots),
            "requests": requests,
            "policies": _policies(host, watermark),
            "stale_prefix": settings.OCRDASH["STALE_PREFIX"],
            "live": feedback.host_live(host),
            "nav": "fleet",
        },
    )


# The parts of the host page the live poll may send again, and their templates.
LIVE_PARTS = {"files": "models_admin/_host_files.html", "totals": "models_admin/_host_totals.html"}


def live(request: HttpRequest, name: str) -> JsonResponse:
    """The host page's live panel (orders asked, progress, last inventory/free/purge), polled.

    ``?files=<version>&totals=<version>``: the versions the page shows; a part whose version
    changed (an inventory or a prune answered) comes back in ``parts``, rendered as the page
    renders it, so the table refreshes without a reload and costs nothing while it stands still.
    """
    host = get_host_for_user(request, name)
    context = feedback.host_live(host)
    html = render_to_string("models_admin/_host_live.html", context, request=request)
    payload: dict[str, object] = {"html": html, "busy": context["busy"]}
    wanted = {part: request.GET[part] for part in LIVE_PARTS if part in request.GET}
    if wanted:
        host.refresh_from_db()  # the panel's context may be older than the latest inventory
        table = host_files(host)
        changed = [part for part, shown in wanted.items() if shown != table.version]
        if changed:
            part_context = {
                "host": host,
                "files": table.files,
                "stale_prefix": settings.OCRDASH["STALE_PREFIX"],
            }
            payload["parts"] = {
                part: {
                    "html": render_to_string(LIVE_PARTS[part], part_context, request=request),
                    "version": table.version,
                }
                for part in changed
            }
    return JsonResponse(payload)


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
        flash_form_errors(request, form)
        return redirect("ocrdash-host", name=host.name)
    chosen = set(form.cleaned_data["files"])
    try:
        prune = workflow.propose(
            host=host,
            files=[f for f in current if f.id in chosen],
            reason=form.cleaned_data["reason"],
            user=request.user,
        )
    except DomainError as exc:
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
    except DomainError as exc:
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
    except DomainError as exc:
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
        hosts.accept_host,
        "{host} accepted: orders are now sent to it.",
    )


@require_POST
def retire(request: HttpRequest, name: str) -> HttpResponse:
    return _host_action(
        request,
        name,
        Action.MANAGE_HOSTS,
        hosts.retire_host,
        "{host} retired: hidden from the overview, its proposed requests expired.",
    )
