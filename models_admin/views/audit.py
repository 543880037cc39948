"""The audit log (filters, pages, CSV export) and the reports agents sent that were refused."""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone

from ..forms import AuditFilter
from ..models import AuditEvent, ReceivedReport
from ..security.roles import Action
from ..security.spreadsheet import csv_lines
from . import CappedPaginator, require

CSV_COLUMNS = ["at", "actor", "action", "host", "object_type", "object_id", "details"]


def _filtered(request: HttpRequest) -> AuditFilter:
    return AuditFilter(request.GET, queryset=AuditEvent.objects.order_by("-at", "-id"))


def index(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    filterset = _filtered(request)
    page = CappedPaginator(filterset.qs, 50).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    return render(
        request,
        "models_admin/audit.html",
        {"filter": filterset, "page": page, "query": query.urlencode(), "nav": "audit"},
    )


def _csv_rows(events) -> Iterator[str]:
    # iterator(): an export of years of history must not load it all into memory.
    rows = (
        [
            e.at.isoformat(),
            e.actor,
            e.action,
            e.host,
            e.object_type,
            e.object_id,
            json.dumps(e.details, sort_keys=True),
        ]
        for e in events.iterator(chunk_size=2000)
    )
    return csv_lines(CSV_COLUMNS, rows)


def export_csv(request: HttpRequest) -> StreamingHttpResponse:
    require(request, Action.VIEW)
    filterset = _filtered(request)
    response = StreamingHttpResponse(_csv_rows(filterset.qs), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    response["Content-Disposition"] = f'attachment; filename="ocrdash-audit-{stamp}.csv"'
    return response


def rejected_reports(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    reports = ReceivedReport.objects.filter(status=ReceivedReport.Status.REJECTED).select_related("host")
    page = CappedPaginator(reports.order_by("-received_at"), 50).get_page(request.GET.get("page"))
    return render(request, "models_admin/rejected_reports.html", {"page": page, "nav": "audit"})
