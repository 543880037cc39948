"""Fleet overview: every host at a glance, kept fresh by polling a fragment endpoint."""

from __future__ import annotations

from django.conf import settings
from django.db.models import Count, F, Q, QuerySet, Sum
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone

from ..forms import FleetFilterForm
from ..models import Host, PruneRequest
from ..roles import Action
from . import require

SORTS = {
    "name": "name",
    "size": "total_bytes",
    "free": "disk_free",
    "last_seen": "last_seen",
    "models": "file_count",
    "pending": "pending_count",
}


def fleet_hosts(form: FleetFilterForm) -> tuple[QuerySet[Host], str]:
    """Hosts for the overview, filtered and sorted; one query however many hosts (the
    pending counts are annotated, never asked per row)."""
    data = form.cleaned_data if form.is_valid() else {}
    hosts = Host.objects.annotate(
        pending_count=Count("prune_requests", filter=Q(prune_requests__state=PruneRequest.State.PROPOSED))
    )
    if not data.get("retired"):
        hosts = hosts.exclude(status=Host.Status.RETIRED)
    if data.get("q"):
        hosts = hosts.filter(name__icontains=data["q"])
    if data.get("status"):
        hosts = hosts.filter(status=data["status"])
    if data.get("errors"):
        hosts = hosts.filter(
            ~Q(last_error="") | Q(model_dir_state__in=[Host.DirState.MISSING, Host.DirState.UNREADABLE])
        )
    if data.get("min_size") is not None:
        hosts = hosts.filter(total_bytes__gte=data["min_size"])
    sort = data.get("sort") or "name"
    field = SORTS.get(sort.lstrip("-"), "name")
    descending = sort.startswith("-")
    # Hosts that never reported have no last_seen / free: they sort last either way.
    expression = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    return hosts.order_by(expression, "name"), sort


def _context(request: HttpRequest) -> dict:
    form = FleetFilterForm(request.GET)
    hosts, sort = fleet_hosts(form)
    hosts = list(hosts)
    now = timezone.now()
    for host in hosts:
        host.presence = presence(host, now)
    totals = Host.objects.exclude(status=Host.Status.RETIRED).aggregate(
        hosts=Count("id"), files=Sum("file_count"), bytes=Sum("total_bytes")
    )
    totals["pending"] = PruneRequest.objects.filter(state=PruneRequest.State.PROPOSED).count()
    totals["pending_hosts"] = sum(1 for h in hosts if h.status == Host.Status.PENDING)
    return {
        "form": form,
        "hosts": hosts,
        "sort": sort,
        "totals": totals,
        "filtered": bool(form.is_valid() and any(v for k, v in form.cleaned_data.items() if k != "sort")),
        "offline_after": settings.OCRDASH["HOST_OFFLINE_AFTER_MINUTES"],
        "missing_after_hours": settings.OCRDASH["HOST_MISSING_AFTER_MINUTES"] / 60,
        "nav": "fleet",
    }


def presence(host: Host, now=None) -> str:
    return host.presence(now)


def overview(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    return render(request, "models_admin/fleet.html", _context(request))


def rows(request: HttpRequest) -> JsonResponse:
    """The overview's <tbody> and totals, rendered, for the page's poller (same filters)."""
    require(request, Action.VIEW)
    context = _context(request)
    return JsonResponse(
        {
            "tbody": render_to_string("models_admin/fleet_rows.html", context, request=request),
            "totals": render_to_string("models_admin/fleet_totals.html", context, request=request),
        }
    )
