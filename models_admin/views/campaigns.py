"""Campaign pages: the list, a new campaign with its preview, one campaign's waves and decisions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import groupby
from typing import Any

from django import forms as djforms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.loader import render_to_string
from django.views.decorators.http import require_POST

from ..campaigns import plan, rollout
from ..capacity import policies
from ..forms import CampaignDecisionForm, CampaignForm
from ..models import Campaign, CampaignHost, HostGroup
from ..security.roles import Action, can
from . import flash_error, require

PAGE_SIZE = 50


def _get_campaign(request: HttpRequest, campaign_id, action: Action = Action.VIEW) -> Campaign:
    campaign = get_object_or_404(
        Campaign.objects.select_related("requested_by", "decided_by"), id=campaign_id
    )
    require(request, action)
    return campaign


def index(request: HttpRequest) -> HttpResponse:
    require(request, Action.VIEW)
    campaigns = Campaign.objects.select_related("requested_by", "decided_by").order_by("-created_at")
    state = request.GET.get("state", "")
    if state in Campaign.State.values:
        campaigns = campaigns.filter(state=state)
    page = Paginator(campaigns, PAGE_SIZE).get_page(request.GET.get("page"))
    rows = [
        {"campaign": c, "progress": rollout.progress(c), "rule": rollout.rule_label(c)}
        for c in page.object_list
    ]
    return render(
        request,
        "models_admin/campaigns.html",
        {
            "campaigns": rows,
            "page": page,
            "state": state,
            "states": Campaign.State.choices,
            "nav": "campaigns",
        },
    )


def new(request: HttpRequest) -> HttpResponse:
    """The form and, once it is filled in (GET), the preview of what the campaign would do."""
    require(request, Action.PROPOSE)
    form = CampaignForm(request.GET or None, initial={"failure_threshold": 0, "canary_size": 1})
    preview = None
    if request.GET and form.is_valid():
        try:
            preview = plan.preview(form.spec())
        except (plan.PlanError, djforms.ValidationError) as exc:
            form.add_error(None, exc.messages[0] if isinstance(exc, djforms.ValidationError) else str(exc))
    return render(request, "models_admin/campaign_new.html", _new_context(form, preview))


def _new_context(form: CampaignForm, preview: plan.Preview | None) -> dict:
    waves: list[tuple[int, list[plan.HostPlan]]] = []
    if preview is not None:
        planned = sorted(preview.planned, key=lambda p: (p.wave or 0, p.host.name))
        waves = [(w, list(g)) for w, g in groupby(planned, key=lambda p: p.wave or 0)]
    return {
        "form": form,
        "preview": preview,
        "waves": waves,
        "groups": HostGroup.objects.order_by("name"),
        "policies": list(policies.REGISTRY.values()),
        "nav": "campaigns",
    }


@require_POST
def propose(request: HttpRequest) -> HttpResponse:
    require(request, Action.PROPOSE)
    form = CampaignForm(request.POST)
    if not form.is_valid():
        return render(request, "models_admin/campaign_new.html", _new_context(form, None), status=400)
    try:
        campaign = rollout.propose(form.spec(), user=request.user, reason=form.cleaned_data["reason"])
    except (rollout.CampaignError, djforms.ValidationError) as exc:
        form.add_error(None, exc.messages[0] if isinstance(exc, djforms.ValidationError) else str(exc))
        return render(request, "models_admin/campaign_new.html", _new_context(form, None), status=400)
    messages.success(request, "Campaign proposed: another approver must approve it before anything is sent.")
    return redirect("ocrdash-campaign", campaign_id=campaign.id)


@dataclass(frozen=True)
class PartRow:
    """One host's line on the campaign page: its part and where its bytes are now."""

    part: CampaignHost
    in_quarantine: int
    freed: int


def _detail_context(request: HttpRequest, campaign: Campaign) -> dict[str, Any]:
    parts = list(
        CampaignHost.objects.filter(campaign=campaign)
        .select_related("host", "request")
        .order_by("wave", "host__name")
    )
    rows = [PartRow(p, *rollout.part_bytes(p.request)) for p in parts if p.wave is not None]
    waves = [(w, list(g)) for w, g in groupby(rows, key=lambda r: r.part.wave)]
    skipped = [p for p in parts if p.wave is None]
    own = campaign.requested_by_id is not None and campaign.requested_by_id == request.user.pk
    return {
        "campaign": campaign,
        "rule": rollout.rule_label(campaign),
        "progress": rollout.progress(campaign),
        "waves": waves,
        "skipped": skipped,
        "warnings": sum(1 for p in parts for f in p.files if f.get("last_copy")),
        "known": sum(1 for p in parts for f in p.files if f.get("known_to_aspose")),
        "own_campaign": own,
        "may_decide": can(request.user, Action.APPROVE),
        # Polled every second while hosts work on their parts, every 15 s otherwise.
        "busy": campaign.state == Campaign.State.RUNNING,
        "nav": "campaigns",
    }


def detail(request: HttpRequest, campaign_id) -> HttpResponse:
    campaign = _get_campaign(request, campaign_id)
    return render(request, "models_admin/campaign.html", _detail_context(request, campaign))


def live(request: HttpRequest, campaign_id) -> JsonResponse:
    """The campaign page's body (progress, waves, per-host state), polled by live.js.

    The page reloads itself when the state changed, so that its buttons (pause, resume, halt)
    always match the campaign; between changes only the body is swapped.
    """
    campaign = _get_campaign(request, campaign_id)
    context = _detail_context(request, campaign)
    html = render_to_string("models_admin/_campaign_body.html", context, request=request)
    return JsonResponse({"html": html, "state": campaign.state, "busy": context["busy"]})


def _decide(request: HttpRequest, campaign_id, transition: Callable, done: str) -> HttpResponse:
    campaign = _get_campaign(request, campaign_id, Action.APPROVE)
    form = CampaignDecisionForm(request.POST)
    data: dict[str, Any] = form.cleaned_data if form.is_valid() else {"comment": "", "allow_last_copy": False}
    try:
        if transition is rollout.approve:
            rollout.approve(
                campaign.id, request.user, comment=data["comment"], allow_last_copy=data["allow_last_copy"]
            )
        else:
            transition(campaign.id, request.user, comment=data["comment"])
    except rollout.workflow.WorkflowError as exc:
        flash_error(request, exc)
    else:
        messages.success(request, done)
    return redirect("ocrdash-campaign", campaign_id=campaign.id)


@require_POST
def approve(request: HttpRequest, campaign_id) -> HttpResponse:
    return _decide(request, campaign_id, rollout.approve, "Approved: the canary wave is on its way.")


@require_POST
def reject(request: HttpRequest, campaign_id) -> HttpResponse:
    return _decide(request, campaign_id, rollout.reject, "Rejected: nothing will be sent.")


@require_POST
def pause(request: HttpRequest, campaign_id) -> HttpResponse:
    return _decide(
        request, campaign_id, rollout.pause, "Paused: the running wave finishes, no new wave starts."
    )


@require_POST
def resume(request: HttpRequest, campaign_id) -> HttpResponse:
    return _decide(request, campaign_id, rollout.resume, "Resumed.")


@require_POST
def halt(request: HttpRequest, campaign_id) -> HttpResponse:
    return _decide(request, campaign_id, rollout.halt, "Halted: what was sent finishes, nothing else starts.")


@require_POST
def cancel(request: HttpRequest, campaign_id) -> HttpResponse:
    return _decide(request, campaign_id, rollout.cancel, "Cancelled.")
