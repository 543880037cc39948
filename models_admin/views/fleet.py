"""Fleet overview: every host at a glance, a page at a time, problems first, kept fresh by
polling a fragment endpoint for the page on screen."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.paginator import Paginator
from django.db import connection
from django.db.models import (
    Case,
    Count,
    DurationField,
    ExpressionWrapper,
    F,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone

from ..fleet import labels
from ..forms import FleetFilterForm
from ..models import Campaign, Host, HostGroup, PruneRequest
from ..security.roles import Action
from . import require

# Rows per page: the page and its 10-second poller cost the same at 3 hosts and at 10,000.
PAGE_SIZE = 50
# Disk this full (percent used) is a problem worth listing first; the bar turns red here too.
LOW_DISK_USED_PERCENT = 90

SORTS = {
    "name": "name",
    "size": "total_bytes",
    "free": "disk_free",
    "last_seen": "last_seen",
    "models": "file_count",
    "pending": "pending_count",
    "full": "forecast_days",  # days until full (capacity/forecast.py); no forecast sorts last
}
# The default order: hosts that need someone first, in this order, then by name.
ATTENTION = ("error", "offline", "low disk", "waiting for approval")


def _problems(now) -> dict[str, Q]:
    """What makes a host need attention, as conditions the database evaluates."""
    # Host.offline_after in SQL: three missed beats for a host that heartbeats, the configured
    # silence for one that does not.
    silence = timedelta(minutes=settings.OCRDASH["HOST_OFFLINE_AFTER_MINUTES"])
    # A duration is an interval on PostgreSQL and a count of microseconds on SQLite (the demo).
    per_second = timedelta(seconds=1) if connection.features.has_native_duration_field else 1_000_000
    beats = ExpressionWrapper(
        F("heartbeat_seconds") * Host.MISSED_BEATS_OFFLINE * Value(per_second), output_field=DurationField()
    )
    offline = Q(heartbeat_seconds__isnull=True, last_seen__lt=now - silence) | Q(
        heartbeat_seconds__isnull=False, last_seen__lt=Value(now) - beats
    )
    return {
        "error": ~Q(last_error="") | Q(model_dir_state__in=[Host.DirState.MISSING, Host.DirState.UNREADABLE]),
        "offline": offline,
        "low disk": Q(disk_total__gt=0, disk_free__lt=F("disk_total") * (100 - LOW_DISK_USED_PERCENT) / 100),
        # An uncorrelated IN: PostgreSQL hashes the proposed requests' hosts once, where the
        # pending_count subquery would run once per host of the fleet (9 of 14 ms at 10,000).
        "waiting for approval": Q(status=Host.Status.PENDING)
        | Q(pk__in=PruneRequest.objects.filter(state=PruneRequest.State.PROPOSED).values("host_id")),
    }


def _with_pending(hosts: QuerySet[Host]) -> QuerySet[Host]:
    """Each host's proposed requests, a correlated subquery (never asked per row)."""
    pending = (
        PruneRequest.objects.filter(host=OuterRef("pk"), state=PruneRequest.State.PROPOSED)
        .order_by()
        .values("host")
        .annotate(n=Count("*"))
        .values("n")
    )
    return hosts.annotate(pending_count=Coalesce(Subquery(pending), 0))


def fleet_hosts(form: FleetFilterForm, now=None) -> tuple[QuerySet[Host], str]:
    """Hosts for the overview, filtered and sorted in the database; one query however many
    hosts (the pending counts are a correlated subquery, never asked per row)."""
    now = now or timezone.now()
    data = form.cleaned_data if form.is_valid() else {}
    hosts = _with_pending(Host.objects.all())
    if not data.get("retired"):
        hosts = hosts.exclude(status=Host.Status.RETIRED)
    if data.get("q"):
        hosts = hosts.filter(name__icontains=data["q"])
    if data.get("status"):
        hosts = hosts.filter(status=data["status"])
    problems = _problems(now)
    if data.get("errors"):
        hosts = hosts.filter(problems["error"])
    if data.get("min_size") is not None:
        hosts = hosts.filter(total_bytes__gte=data["min_size"])
    if data.get("label"):
        hosts = labels.matching(hosts, data["label"])
    if data.get("group") is not None:
        hosts = labels.group_hosts(data["group"], hosts)
    sort = data.get("sort") or ""
    if sort.lstrip("-") not in SORTS:
        rank = Case(
            *(When(condition, then=Value(i)) for i, condition in enumerate(problems.values())),
            default=Value(len(problems)),
            output_field=IntegerField(),
        )
        return hosts.annotate(attention=rank).order_by("attention", "name"), "attention"
    field = SORTS[sort.lstrip("-")]
    descending = sort.startswith("-")
    # Hosts that never reported have no last_seen / free: they sort last either way. A column
    # that is never NULL is sorted plainly, so that its index (host_size) serves the order.
    if field not in {f.name for f in Host._meta.concrete_fields if f.null}:
        expression = F(field).desc() if descending else F(field).asc()
    else:
        expression = F(field).desc(nulls_last=True) if descending else F(field).asc(nulls_last=True)
    return hosts.order_by(expression, "name"), sort


def fleet_totals(now=None) -> dict[str, int]:
    """The cards above the table, from two aggregate queries (never from the listed rows)."""
    problems = _problems(now or timezone.now())
    totals = Host.objects.exclude(status=Host.Status.RETIRED).aggregate(
        hosts=Count("id"),
        files=Coalesce(Sum("file_count"), 0),
        bytes=Coalesce(Sum("total_bytes"), 0),
        pending_hosts=Count("id", filter=Q(status=Host.Status.PENDING)),
        errors=Count("id", filter=problems["error"]),
        offline=Count("id", filter=problems["offline"]),
        low_disk=Count("id", filter=problems["low disk"]),
    )
    totals["pending"] = PruneRequest.objects.filter(state=PruneRequest.State.PROPOSED).count()
    totals["pending_campaigns"] = Campaign.objects.filter(state=Campaign.State.PROPOSED).count()
    return totals


def _context(request: HttpRequest) -> dict:
    form = FleetFilterForm(request.GET)
    now = timezone.now()
    hosts, sort = fleet_hosts(form, now)
    totals = fleet_totals(now)
    filtered = bool(form.is_valid() and any(v for k, v in form.cleaned_data.items() if k != "sort"))
    # The page is chosen on (id, sort key, name) alone and its 50 hosts are read whole after:
    # sorting every host's full row to keep 50 took three times as long at 10,000 hosts.
    paginator = Paginator(hosts.values_list("pk", flat=True), PAGE_SIZE)
    if not filtered:
        # Every host but the retired ones: the cards' count already, no second COUNT(*).
        paginator.count = totals["hosts"]
    page = paginator.get_page(request.GET.get("page"))
    chosen = list(page.object_list)
    by_id = _with_pending(Host.objects.filter(pk__in=chosen)).in_bulk()
    # The template's host.presence calls Host.presence(): nothing is hung on the instances.
    rows = [by_id[pk] for pk in chosen]
    return {
        "form": form,
        "hosts": rows,
        "host_groups": HostGroup.objects.order_by("name"),
        "page": page,
        "sort": sort,
        "attention": ATTENTION,
        "totals": totals,
        "filtered": filtered,
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
    """The overview's <tbody> and totals, rendered, for the page's poller: the same filters
    and the same page, so a refresh costs one page of rows whatever the fleet's size."""
    require(request, Action.VIEW)
    context = _context(request)
    return JsonResponse(
        {
            "tbody": render_to_string("models_admin/fleet_rows.html", context, request=request),
            "totals": render_to_string("models_admin/fleet_totals.html", context, request=request),
        }
    )
