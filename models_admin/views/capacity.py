"""Capacity pages: the "free X GB" plan of a host (preview, then one click to a request)."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from ..capacity import planner
from ..security.roles import Action, can
from . import flash_error, get_host_for_user

DEFAULT_AMOUNT = "1 GB"


def _options(data) -> dict:
    """The plan's knobs from a form; bad numbers fall back to the defaults with no surprise."""
    try:
        days = max(1, int(data.get("unused_days") or 30))
    except ValueError:
        days = 30
    return {
        "unused_days": days,
        "allow_known": data.get("allow_known") == "1",
        "allow_last_copy": data.get("allow_last_copy") == "1",
    }


def plan(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the preview of freeing ``?free=`` on this host (nothing is written)."""
    host = get_host_for_user(request, name)
    amount = request.GET.get("free", "").strip() or DEFAULT_AMOUNT
    options = _options(request.GET)
    error, result = "", None
    try:
        result = planner.plan_host(host, planner.parse_amount(amount), **options)
    except planner.PlanError as exc:
        error = str(exc)
    return render(
        request,
        "models_admin/plan.html",
        {
            "host": host,
            "amount": amount,
            "options": options,
            "plan": result,
            "error": error,
            "may_propose": can(request.user, Action.PROPOSE),
            "nav": "fleet",
        },
    )


@require_POST
def propose_plan(request: HttpRequest, name: str) -> HttpResponse:
    """Turn the previewed plan into a prune request, if it is still what was shown."""
    host = get_host_for_user(request, name, Action.PROPOSE)
    amount = request.POST.get("free", "")
    options = _options(request.POST)
    shown = [tuple(key.split(":", 1)) for key in request.POST.getlist("file")]
    try:
        snapshot_id = int(request.POST.get("snapshot") or 0) or None
        prune = planner.propose(
            host,
            planner.parse_amount(amount),
            user=request.user,
            shown_snapshot_id=snapshot_id,
            shown_paths=[(s, p) for s, p in shown],
            **options,
        )
    except (planner.PlanError, ValueError) as exc:
        flash_error(request, exc)
        query = f"?free={amount}&unused_days={options['unused_days']}"
        return redirect(f"{request.path.rsplit('/propose/', 1)[0]}/{query}")
    messages.success(
        request, f"Request {prune.short_id} proposed from the plan: an approver must now decide."
    )
    return redirect("ocrdash-request", request_id=prune.id)
