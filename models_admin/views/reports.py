"""Reports (charts with their numbers), the deletions audit with its exports, and the
settings of scheduled inventories and snapshot retention."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBadRequest,
    JsonResponse,
    StreamingHttpResponse,
)
from django.http.response import HttpResponseBase
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from .. import schedules
from ..capacity import scheduled as capacity_scheduled
from ..capacity import watermarks as capacity_watermarks
from ..inventory import reports
from ..inventory.compaction import DEFAULT_RECEIVED_REPORTS_DAYS, Retention
from ..models import Host, HostGroup
from ..security.params import validate_report_date
from ..security.roles import Action, can
from ..security.spreadsheet import csv_lines
from . import flash_form_errors, require

DEFAULT_DAYS = 90
MAX_DAYS = 3 * 366  # a daily series longer than this is unreadable as a chart
DELETIONS_PAGE = 100


# ---------------------------------------------------------------- filters


# Names the host search field's suggestions list at most (``host_names``).
HOST_SUGGESTIONS = 20


class HostNamesField(forms.Field):
    """Host names, ``?host=`` repeated to pick several; "" is the page's "All hosts".

    The page offers a search field (suggestions from ``host_names``) instead of a choice of
    every host: 10,000 options cost more to render than the whole report. The names asked for
    are checked in one query, so an unknown host is an error rather than an empty chart.
    """

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        if not value:
            return []
        values = [value] if isinstance(value, str) else list(value)
        return list(dict.fromkeys(str(v).strip() for v in values if str(v).strip()))

    def validate(self, value: list[str]) -> None:
        known = set(Host.objects.filter(name__in=value).values_list("name", flat=True))
        unknown = [n for n in value if n not in known]
        if unknown:
            raise forms.ValidationError(f"no host named {', '.join(unknown[:5])}")


class RangeForm(forms.Form):
    """Date range and hosts, shared by the reports page and the deletions audit."""

    start = forms.DateField(required=False, label="From", validators=[validate_report_date])
    end = forms.DateField(required=False, label="To", validators=[validate_report_date])
    host = HostNamesField(required=False, label="Hosts")

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        end = data.get("end") or timezone.localdate()
        start = data.get("start") or reports.default_start(end, DEFAULT_DAYS)
        if start > end:
            raise forms.ValidationError("the start of the range is after its end")
        if (end - start).days >= MAX_DAYS:
            raise forms.ValidationError("choose at most three years")
        data["start"], data["end"] = start, end
        return data


class DeletionsForm(RangeForm):
    user = forms.CharField(required=False, label="User", help_text="who asked or who approved")
    outcomes = forms.ChoiceField(
        required=False,
        choices=[("reclaimed", "Removed files only"), ("all", "Every outcome, skips included")],
    )


def _presets() -> list[dict]:
    today = timezone.localdate()
    quarter_start = date(today.year, 3 * ((today.month - 1) // 3) + 1, 1)
    return [
        {"label": "30 days", "start": today - timedelta(days=29), "end": today},
        {"label": "90 days", "start": today - timedelta(days=89), "end": today},
        {"label": "This quarter", "start": quarter_start, "end": today},
        {"label": "1 year", "start": today - timedelta(days=364), "end": today},
    ]


def _status(form: forms.Form) -> int:
    """400 for a query the page could not use (it shows why, with the default range)."""
    return 400 if form.is_bound and not form.is_valid() else 200


def _query_errors(form: forms.Form) -> str:
    return "; ".join(f"{name}: {' '.join(str(e) for e in errors)}" for name, errors in form.errors.items())


def _range(form: RangeForm) -> tuple[date, date, list[str]]:
    """The form's values, or the defaults when it is invalid (the page shows the errors)."""
    if form.is_valid():
        return form.cleaned_data["start"], form.cleaned_data["end"], form.cleaned_data["host"]
    start, end = reports.default_range(length_days=DEFAULT_DAYS)
    return start, end, []


# ---------------------------------------------------------------- the reports page


# Hosts drawn and listed one by one on the reports page; the others are summed.
TOP_HOSTS = 30


@require_GET
def index(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    form = RangeForm(request.GET or None)
    start, end, hosts = _range(form)
    # The fleet per day in SQL, the biggest hosts by name with their own series, the rest as
    # one series and "and N more": a page for 10,000 hosts must not carry (or compute) 10,000
    # series of 90 days (the chart shows 8 of them anyway).
    disk = reports.disk_overview(start, end, hosts, top=TOP_HOSTS)
    reclaimed = reports.reclaimed_per_week(start, end, hosts)
    requests = reports.requests_per_week(start, end, hosts)
    per_host_reclaimed = reports.reclaimed_per_host(start, end, hosts)
    latest_shown = disk.latest
    # Everything the charts draw, as plain JSON (json_script): the tables below show the
    # same numbers, so the page reads without JavaScript and the tests read the tables.
    chart_data = {
        "days": [d.isoformat() for d in disk.days],
        "fleet_bytes": disk.fleet_bytes,
        "host_bytes": {h: disk.top.bytes[h] for h in disk.top.hosts},
        "other_hosts": disk.host_count - len(disk.latest),
        "other_bytes": disk.other_bytes,
        "weeks": [w["week"].isoformat() for w in reclaimed],
        "reclaimed_bytes": [w["bytes"] for w in reclaimed],
        "reclaimed_in_quarantine": [w["in_quarantine"] for w in reclaimed],
        "reclaimed_freed": [w["freed"] for w in reclaimed],
        "reclaimed_files": [w["files"] for w in reclaimed],
        "models_hosts": [row["host"] for row in latest_shown],
        "models_files": [row["files"] for row in latest_shown],
        "request_weeks": [r["week"].isoformat() for r in requests],
        "requests": {
            k: [r[k] for r in requests] for k in ("pending", "proposed", "approved", "rejected", "expired")
        },
    }
    # The daily table would be 90 rows per host; it shows the fleet per week (week-end value).
    weekly_disk = [
        {"day": d, "bytes": b, "files": f}
        for d, b, f in zip(disk.days, disk.fleet_bytes, disk.fleet_files, strict=True)
        if d.weekday() == 6 or d == disk.days[-1]
    ]
    return render(
        request,
        "models_admin/reports/index.html",
        {
            "form": form,
            "start": start,
            "end": end,
            "selected_hosts": hosts,
            "presets": _presets(),
            "disk": disk,
            "weekly_disk": weekly_disk,
            "latest": latest_shown,
            "latest_more": disk.host_count - len(disk.latest),
            "reclaimed": reclaimed,
            "reclaimed_total": sum(w["bytes"] for w in reclaimed),
            "reclaimed_files": sum(w["files"] for w in reclaimed),
            # Two numbers, never one: a quarantined file still takes its space until purged.
            "reclaimed_in_quarantine": sum(w["in_quarantine"] for w in reclaimed),
            "reclaimed_freed": sum(w["freed"] for w in reclaimed),
            "per_host_reclaimed": per_host_reclaimed,
            "fleet_change": disk.fleet_bytes[-1] - disk.fleet_bytes[0],
            "pending_now": requests[-1]["pending"] if requests else 0,
            "requests": requests,
            "chart_data": chart_data,
            "nav": "reports",
        },
        status=_status(form),
    )


@require_GET
def host_names(request: HttpRequest) -> JsonResponse:
    """Suggestions for the reports' host search field: at most ``HOST_SUGGESTIONS`` names
    containing ``q``, those starting with it first. One indexed query at any fleet size."""
    require(request, Action.VIEW)
    q = request.GET.get("q", "").strip()[:100]
    hosts = Host.objects.all()
    if q:
        hosts = hosts.filter(name__icontains=q)
    names = list(hosts.order_by("name").values_list("name", flat=True)[: HOST_SUGGESTIONS * 5])
    names.sort(key=lambda n: (not n.lower().startswith(q.lower()), n))
    return JsonResponse({"q": q, "hosts": names[:HOST_SUGGESTIONS]})


# ---------------------------------------------------------------- the deletions audit


def _deletion_filter(request: HttpRequest) -> tuple[DeletionsForm, reports.DeletionFilter]:
    form = DeletionsForm(request.GET or None)
    start, end, hosts = _range(form)
    user = outcomes = ""
    if form.is_valid():
        user, outcomes = form.cleaned_data["user"].strip(), form.cleaned_data["outcomes"]
    return form, reports.DeletionFilter(
        start=start, end=end, hosts=hosts, user=user, outcomes=outcomes or "reclaimed"
    )


@require_GET
def deletions(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    form, f = _deletion_filter(request)
    qs = reports.deletions(f)
    page = Paginator(qs, DELETIONS_PAGE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "models_admin/reports/deletions.html",
        {
            "form": form,
            "filter": f,
            "start": f.start,
            "end": f.end,
            "selected_hosts": list(f.hosts),
            "presets": _presets(),
            "deletion_filters": True,
            "page": page,
            "rows": [(item, reports.deletion_row(item)) for item in page.object_list],
            "totals": reports.deletion_totals(qs),
            "query": query.urlencode(),
            "nav": "reports",
        },
        status=_status(form),
    )


def _csv_lines(qs) -> Iterator[str]:
    columns = reports.DELETION_COLUMNS
    # In chunks: a year of deletions must not sit in memory.
    rows = reports.deletion_rows(qs)
    return csv_lines(columns, ([row[c] for c in columns] for row in rows))


@require_GET
def deletions_export(request: HttpRequest, fmt: str) -> HttpResponseBase:
    """The deletions audit with the page's filters, as CSV or JSON (totals included in JSON)."""
    require(request, Action.VIEW)
    if fmt not in ("csv", "json"):
        raise Http404("export as csv or json")
    form, f = _deletion_filter(request)
    if _status(form) == 400:
        # A file named for a range that is not the one asked for would mislead: refuse.
        return HttpResponseBadRequest(_query_errors(form), content_type="text/plain; charset=utf-8")
    qs = reports.deletions(f)
    stamp = f"{f.start:%Y%m%d}-{f.end:%Y%m%d}"
    response: HttpResponseBase
    if fmt == "csv":
        response = StreamingHttpResponse(_csv_lines(qs), content_type="text/csv; charset=utf-8")
    else:
        payload = {
            "filters": {
                "start": f.start.isoformat(),
                "end": f.end.isoformat(),
                "hosts": list(f.hosts),
                "user": f.user,
                "outcomes": f.outcomes,
            },
            "totals": reports.deletion_totals(qs),
            "deletions": list(reports.deletion_rows(qs)),
        }
        response = JsonResponse(payload, json_dumps_params={"indent": 1})
    response["Content-Disposition"] = f'attachment; filename="ocrdash-deletions-{stamp}.{fmt}"'
    return response


# ---------------------------------------------------------------- settings


class IntervalForm(forms.Form):
    minutes = forms.IntegerField(
        required=False,
        min_value=schedules.MIN_INTERVAL_MINUTES,
        max_value=schedules.MAX_INTERVAL_MINUTES,
        help_text="empty: no schedule",
    )


class HostIntervalForm(IntervalForm):
    host = forms.CharField()


class RetentionForm(forms.Form):
    daily_after_days = forms.IntegerField(min_value=1, max_value=3650)
    weekly_after_days = forms.IntegerField(min_value=1, max_value=3650)
    # Optional so that a form without it (an older page, a script) keeps the default.
    received_reports_days = forms.IntegerField(min_value=1, max_value=3650, required=False)
    enabled = forms.BooleanField(required=False)

    def clean(self) -> dict[str, Any]:
        super().clean()
        data = self.cleaned_data
        try:
            data["retention"] = Retention(
                data["daily_after_days"],
                data["weekly_after_days"],
                data.get("received_reports_days") or DEFAULT_RECEIVED_REPORTS_DAYS,
            )
        except (KeyError, ValueError) as exc:
            if not self.errors:
                raise forms.ValidationError(str(exc)) from exc
        return data


@require_GET
def settings_page(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    current = schedules.overview()
    return render(
        request,
        "models_admin/reports/settings.html",
        {
            "current": current,
            "can_configure": can(request.user, Action.CONFIGURE),
            "min_minutes": schedules.MIN_INTERVAL_MINUTES,
            "policy_schedules": capacity_scheduled.all_schedules(),
            "policy_min_minutes": capacity_scheduled.MIN_INTERVAL_MINUTES,
            "groups": HostGroup.objects.order_by("name"),
            "watermark_default": capacity_watermarks.default_marks(),
            "nav": "reports",
        },
    )


def _saved(request: HttpRequest, changed: bool, what: str) -> HttpResponse:
    if changed:
        messages.success(request, f"{what} saved.")
    else:
        messages.info(request, f"{what}: nothing changed.")
    return redirect("ocrdash-settings")


@require_POST
def settings_fleet(request: HttpRequest) -> HttpResponse:
    require(request, Action.CONFIGURE)
    form = IntervalForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("ocrdash-settings")
    changed = schedules.set_fleet_interval(form.cleaned_data["minutes"], request.user)
    return _saved(request, changed, "Fleet-wide inventory schedule")


@require_POST
def settings_host(request: HttpRequest) -> HttpResponse:
    require(request, Action.CONFIGURE)
    form = HostIntervalForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("ocrdash-settings")
    host = get_object_or_404(Host, name=form.cleaned_data["host"])
    changed = schedules.set_host_interval(host, form.cleaned_data["minutes"], request.user)
    return _saved(request, changed, f"Inventory schedule of {host.name}")


@require_POST
def settings_retention(request: HttpRequest) -> HttpResponse:
    require(request, Action.CONFIGURE)
    form = RetentionForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("ocrdash-settings")
    changed = schedules.set_retention(
        form.cleaned_data["retention"], form.cleaned_data["enabled"], request.user
    )
    return _saved(request, changed, "Snapshot retention")


class QuarantineForm(forms.Form):
    days = forms.FloatField(min_value=0, max_value=schedules.MAX_QUARANTINE_DAYS)
    enabled = forms.BooleanField(required=False)


@require_POST
def settings_quarantine(request: HttpRequest) -> HttpResponse:
    require(request, Action.CONFIGURE)
    form = QuarantineForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("ocrdash-settings")
    changed = schedules.set_quarantine_days(
        form.cleaned_data["days"], form.cleaned_data["enabled"], request.user
    )
    return _saved(request, changed, "Quarantine retention")
