"""Capacity pages: the "free X GB" plan of a host (preview, then one click to a request)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar
from urllib.parse import urlencode

from django.contrib import messages
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from ..campaigns import rollout
from ..capacity import planner, policies, scheduled
from ..models import Host, HostGroup
from ..security.roles import Action, can
from . import flash_error, get_host_for_user, require

DEFAULT_AMOUNT = "1 GB"
P = TypeVar("P")


@dataclass(frozen=True)
class PlanAsked:
    """What a plan form asks, read one way by the host's and the group's plan pages and by
    their proposals: the amount as typed (``free``) and the plan's knobs."""

    amount: str
    options: dict[str, Any]

    @classmethod
    def read(cls, data: QueryDict, default_amount: str = "") -> PlanAsked:
        """Bad numbers fall back to the defaults with no surprise; an amount is checked by
        ``planner.parse_amount`` where it is used (a preview says why, a proposal refuses)."""
        try:
            days = max(1, int(data.get("unused_days") or 30))
        except ValueError:
            days = 30
        options = {
            "unused_days": days,
            "allow_known": data.get("allow_known") == "1",
            "allow_last_copy": data.get("allow_last_copy") == "1",
        }
        return cls((data.get("free") or "").strip() or default_amount, options)

    @property
    def query(self) -> str:
        """The preview's query string for the same question (the way back after a refusal)."""
        flags = {k: "1" for k in ("allow_known", "allow_last_copy") if self.options[k]}
        return "?" + urlencode({"free": self.amount, "unused_days": self.options["unused_days"], **flags})

    def preview(self, make: Callable[..., P]) -> tuple[P | None, str]:
        """(``make(bytes, **options)``, "") or (None, why the amount cannot be planned)."""
        try:
            return make(planner.parse_amount(self.amount), **self.options), ""
        except planner.PlanError as exc:
            return None, str(exc)


def _preview_context(asked: PlanAsked, result: object, error: str, request: HttpRequest) -> dict[str, Any]:
    return {
        "amount": asked.amount,
        "options": asked.options,
        "query": asked.query,
        "plan": result,
        "error": error,
        "may_propose": can(request.user, Action.PROPOSE),
    }


def plan(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the preview of freeing ``?free=`` on this host (nothing is written)."""
    host = get_host_for_user(request, name)
    asked = PlanAsked.read(request.GET, DEFAULT_AMOUNT)
    result, error = asked.preview(partial(planner.plan_host, host))
    context = {"host": host, **_preview_context(asked, result, error, request), "nav": "fleet"}
    return render(request, "models_admin/plan.html", context)


@require_POST
def propose_plan(request: HttpRequest, name: str) -> HttpResponse:
    """Turn the previewed plan into a prune request, if it is still what was shown."""
    host = get_host_for_user(request, name, Action.PROPOSE)
    asked = PlanAsked.read(request.POST)
    shown = [tuple(key.split(":", 1)) for key in request.POST.getlist("file")]
    try:
        snapshot_id = int(request.POST.get("snapshot") or 0) or None
        prune = planner.propose(
            host,
            planner.parse_amount(asked.amount),
            user=request.user,
            shown_snapshot_id=snapshot_id,
            shown_paths=[(s, p) for s, p in shown],
            **asked.options,
        )
    except (planner.PlanError, ValueError) as exc:
        flash_error(request, exc)
        return redirect(reverse("ocrdash-host-plan", args=[host.name]) + asked.query)
    messages.success(
        request, f"Request {prune.short_id} proposed from the plan: an approver must now decide."
    )
    return redirect("ocrdash-request", request_id=prune.id)


# ---------------------------------------------------------------- scheduled policies (settings page)


def _int_or_none(raw: str | None, what: str) -> int | None:
    raw = (raw or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{what} must be a whole number, not {raw!r}") from None


@require_POST
def settings_policy(request: HttpRequest) -> HttpResponse:
    """Add, change or remove (empty interval) one policy schedule for a host or a group."""
    require(request, Action.CONFIGURE)
    data = request.POST
    policy = data.get("policy", "")
    try:
        minutes = _int_or_none(data.get("minutes"), "the interval")
        host = group = None
        if data.get("group", "").strip():
            group = get_object_or_404(HostGroup, name=data["group"].strip())
        elif data.get("host", "").strip():
            host = get_object_or_404(Host, name=data["host"].strip())
        names = {"not_used_for": ("days",), "watermark": ("high", "low") if host else ()}.get(policy, ())
        params = {k: data[k] for k in names if data.get(k, "").strip()}
        changed = scheduled.set_schedule(policy, minutes, request.user, host=host, group=group, params=params)
    except (policies.PolicyError, ValueError) as exc:
        flash_error(request, exc)
        return redirect("ocrdash-settings")
    what = f"Schedule of {policy} on {'group ' + group.name if group else 'host ' + host.name}"  # type: ignore[union-attr]
    messages.success(request, f"{what} saved.") if changed else messages.info(
        request, f"{what}: nothing changed."
    )
    return redirect("ocrdash-settings")


@require_POST
def settings_group_watermark(request: HttpRequest) -> HttpResponse:
    """Set (or clear, both empty) a group's high and low watermarks."""
    require(request, Action.CONFIGURE)
    group = get_object_or_404(HostGroup, name=request.POST.get("group", "").strip())
    try:
        high = _int_or_none(request.POST.get("high"), "the high mark")
        low = _int_or_none(request.POST.get("low"), "the low mark")
        changed = scheduled.set_group_marks(group, high, low, request.user)
    except ValueError as exc:
        flash_error(request, exc)
        return redirect("ocrdash-settings")
    what = f"Watermark of group {group.name}"
    messages.success(request, f"{what} saved.") if changed else messages.info(
        request, f"{what}: nothing changed."
    )
    return redirect("ocrdash-settings")


# ---------------------------------------------------------------- a group's plan


def group_plan(request: HttpRequest, name: str) -> HttpResponse:
    """GET: the preview of freeing ``?free=`` on each host of group ``name`` (nothing is written)."""
    require(request, Action.VIEW)
    group = get_object_or_404(HostGroup, name=name)
    asked = PlanAsked.read(request.GET, DEFAULT_AMOUNT)
    result, error = asked.preview(partial(planner.plan_group, group))
    context = {"group": group, **_preview_context(asked, result, error, request), "nav": "groups"}
    return render(request, "models_admin/plan_group.html", context)


@require_POST
def group_plan_campaign(request: HttpRequest, name: str) -> HttpResponse:
    """The group's plan as a campaign, in one click (an approver still decides)."""
    require(request, Action.PROPOSE)
    group = get_object_or_404(HostGroup, name=name)
    asked = PlanAsked.read(request.POST)
    try:
        campaign = rollout.propose_free_space(
            group, planner.parse_amount(asked.amount), user=request.user, **asked.options
        )
    except planner.PlanError as exc:
        flash_error(request, exc)
        return redirect(reverse("ocrdash-group-plan", args=[group.name]) + asked.query)
    messages.success(
        request, f"Campaign {campaign.short_id} proposed from the plan: an approver must now decide."
    )
    return redirect("ocrdash-campaign", campaign_id=campaign.id)
