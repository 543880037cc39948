"""The campaign state machine: propose, approve once, waves, pause, resume, halt, cancel.

Every transition locks the campaign's row (``select_for_update`` in ``transaction.atomic``),
checks the state, writes its audit event in the same transaction, and sends orders only after
commit (``workflow.open_campaign_request`` dispatches on commit). Races it settles:

- Two approvers approving at once: both wait on the row lock; the first moves it to running,
  the second then finds it no longer proposed and gets WrongState. Exactly one approval, one
  canary wave.
- A wave's last answer arriving while the beat task also advances: ``advance`` runs under the
  same lock, so the next wave starts once; the loser finds the wave already moved on.
- Pause, halt or cancel racing ``advance``: whichever commits first wins; ``advance`` does
  nothing unless the campaign is running.

Lock order: the campaign row first, then (inside workflow) request and host rows, never the
other way round: requests finish (``record_outcomes``) without touching the campaign and call
``advance`` only after their own transaction committed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from workers.schema import Store

from ..approvals import workflow
from ..capacity import planner as capacity_planner
from ..models import AuditEvent, Campaign, CampaignHost, Host, HostGroup, PruneItem, PruneRequest
from ..notifications import Event
from ..notifications.send import notify_campaign
from ..security import roles
from ..security.roles import actor_name
from . import plan as planning

log = logging.getLogger(__name__)
State = Campaign.State
Part = CampaignHost.State
Action = AuditEvent.Action
ReqState = PruneRequest.State
FINISHED_REQUEST_STATES = (
    ReqState.COMPLETED,
    ReqState.PARTIAL,
    ReqState.FAILED,
    ReqState.EXPIRED,
    ReqState.REJECTED,
)


class CampaignError(workflow.WorkflowError):
    """A campaign transition that is not allowed; ``str()`` is fit to show the user."""


class WrongState(CampaignError, workflow.WrongState):
    pass


class NotAllowed(CampaignError, workflow.NotAllowed):
    pass


@dataclass(frozen=True)
class Identity:
    """A file as the approver saw it, in the shape ``workflow`` copies into request items."""

    path: str
    size: int
    mtime_ns: int
    sha256: str
    known_to_aspose: bool
    store: str = Store.LLM.value


def _locked(campaign_id) -> Campaign:
    try:
        return Campaign.objects.select_for_update().get(id=campaign_id)
    except (Campaign.DoesNotExist, ValueError, TypeError):
        raise CampaignError(f"no such campaign: {campaign_id}") from None


def _record(action: str, campaign: Campaign, user=None, **details: Any) -> None:
    AuditEvent.record(action, actor=actor_name(user), obj=campaign, **details)


# ---------------------------------------------------------------- proposing


def propose(spec: planning.Spec, *, user, reason: str, mode: str = "quarantine") -> Campaign:
    """Plan ``spec`` now and store the plan for an approver: nothing is sent yet."""
    reason = (reason or "").strip()
    if not reason:
        raise CampaignError("a campaign needs a reason")
    try:
        preview = planning.preview(spec)
    except planning.PlanError as exc:
        raise CampaignError(str(exc)) from None
    if not preview.planned:
        raise CampaignError("no host would take part: " + _skips_summary(preview))
    now = timezone.now()
    with transaction.atomic():
        campaign = Campaign.objects.create(
            reason=reason,
            target_kind=spec.target_kind,
            target_group=spec.group,
            target_label=spec.target_label()[:300],
            target_selector=dict(spec.selector),
            rule_kind=spec.rule_kind,
            policy=spec.policy if spec.rule_kind == Campaign.Rule.POLICY else "",
            policy_params=preview.cleaned_params,
            model_name=spec.model_name,
            model_sha256=spec.model_sha256,
            mode=mode,
            canary_size=spec.canary_size,
            wave_size=spec.wave_size,
            wave_percent=spec.wave_percent,
            failure_threshold=spec.failure_threshold,
            requested_by=user,
            created_at=now,
            expires_at=now + timedelta(hours=settings.OCRDASH["REQUEST_TTL_HOURS"]),
            wave_count=preview.wave_count,
        )
        CampaignHost.objects.bulk_create(
            CampaignHost(
                campaign=campaign,
                host=p.host,
                wave=p.wave,
                state=Part.SKIPPED if p.skipped else Part.PLANNED,
                skip_reason=p.skipped[:300],
                files=p.files,
                bytes_planned=p.bytes,
            )
            for p in preview.hosts
        )
        _record(
            Action.CAMPAIGN_PROPOSED,
            campaign,
            user,
            target=campaign.target_label,
            rule=rule_label(campaign),
            reason=reason,
            hosts=len(preview.planned),
            skipped=len(preview.skipped),
            waves=preview.wave_count,
            files=preview.file_count,
            bytes=preview.bytes,
        )
        notify_campaign(Event.CAMPAIGN_WAITING, campaign, role=roles.Action.APPROVE, exclude=[user])
    return campaign


def _skips_summary(preview: planning.Preview) -> str:
    if not preview.hosts:
        return "the target names no host"
    reasons: dict[str, int] = {}
    for p in preview.skipped:
        reasons[p.skipped] = reasons.get(p.skipped, 0) + 1
    return "; ".join(f"{n} {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:4])


def rule_label(campaign: Campaign) -> str:
    if campaign.rule_kind == Campaign.Rule.IDENTITY:
        return f"{campaign.model_name} ({campaign.model_sha256[:12]})"
    params = ", ".join(f"{k}={v}" for k, v in sorted(campaign.policy_params.items()))
    return f"policy {campaign.policy}" + (f" ({params})" if params else "")


# ---------------------------------------------------------------- deciding


def expire_stale(now: datetime | None = None, campaign_id=None) -> int:
    """Expire proposed campaigns past their deadline, each in a transaction of its own."""
    now = now or timezone.now()
    due = Campaign.objects.filter(state=State.PROPOSED, expires_at__lte=now)
    if campaign_id is not None:
        due = due.filter(id=campaign_id)
    count = 0
    for campaign_pk in due.values_list("id", flat=True):
        with transaction.atomic():
            if Campaign.objects.filter(id=campaign_pk, state=State.PROPOSED).update(
                state=State.EXPIRED, finished_at=now
            ):
                _record(Action.CAMPAIGN_EXPIRED, Campaign.objects.get(id=campaign_pk))
                count += 1
    return count


def approve(campaign_id, user, *, comment: str = "", allow_last_copy: bool = False) -> Campaign:
    """Approve (two-person rule) and start the canary wave; its orders go out after commit."""
    expire_stale(campaign_id=campaign_id)
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.state != State.PROPOSED:
            raise WrongState(f"campaign is {campaign.get_state_display().lower()}, not waiting for approval")
        if campaign.requested_by_id is not None and campaign.requested_by_id == user.pk:
            raise NotAllowed("you proposed this campaign: another approver must decide")
        campaign.state = State.RUNNING
        campaign.decided_by = user
        campaign.decided_at = timezone.now()
        campaign.decision_comment = comment.strip()
        campaign.allow_last_copy = bool(allow_last_copy)
        campaign.current_wave = 0
        campaign.save(
            update_fields=[
                "state",
                "decided_by",
                "decided_at",
                "decision_comment",
                "allow_last_copy",
                "current_wave",
            ]
        )
        _record(
            Action.CAMPAIGN_APPROVED,
            campaign,
            user,
            comment=campaign.decision_comment,
            requested_by=campaign.requested_by_name,
            allow_last_copy=campaign.allow_last_copy,
        )
        notify_campaign(Event.CAMPAIGN_APPROVED, campaign, users=[campaign.requested_by_id])
        _start_wave(campaign, 0)
        _settle(campaign)
    return campaign


def reject(campaign_id, user, *, comment: str = "") -> Campaign:
    expire_stale(campaign_id=campaign_id)
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.state != State.PROPOSED:
            raise WrongState(f"campaign is {campaign.get_state_display().lower()}, not waiting for approval")
        now = timezone.now()
        campaign.state, campaign.decided_by, campaign.decided_at = State.REJECTED, user, now
        campaign.decision_comment, campaign.finished_at = comment.strip(), now
        campaign.save(update_fields=["state", "decided_by", "decided_at", "decision_comment", "finished_at"])
        campaign.hosts.filter(state=Part.PLANNED).update(state=Part.CANCELLED)
        _record(Action.CAMPAIGN_REJECTED, campaign, user, comment=campaign.decision_comment)
        notify_campaign(Event.CAMPAIGN_REJECTED, campaign, users=[campaign.requested_by_id], exclude=[user])
    return campaign


def pause(campaign_id, user, *, comment: str = "") -> Campaign:
    """No new wave starts; the hosts of the running wave finish what they were sent."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.state != State.RUNNING:
            raise WrongState(f"campaign is {campaign.get_state_display().lower()}, not running")
        campaign.state = State.PAUSED
        campaign.save(update_fields=["state"])
        _record(Action.CAMPAIGN_PAUSED, campaign, user, wave=campaign.current_wave, comment=comment.strip())
    return campaign


def resume(campaign_id, user, *, comment: str = "") -> Campaign:
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.state != State.PAUSED:
            raise WrongState(f"campaign is {campaign.get_state_display().lower()}, not paused")
        campaign.state = State.RUNNING
        campaign.save(update_fields=["state"])
        _record(Action.CAMPAIGN_RESUMED, campaign, user, wave=campaign.current_wave, comment=comment.strip())
        _settle(campaign)
    return campaign


def halt(campaign_id, user, *, comment: str = "") -> Campaign:
    """Stop for good after the running wave: what was sent finishes, nothing else starts."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.state not in (State.RUNNING, State.PAUSED):
            raise WrongState(f"campaign is {campaign.get_state_display().lower()}, not running or paused")
        reason = f"halted by {actor_name(user)}" + (f": {comment.strip()}" if comment.strip() else "")
        _halt(campaign, reason, user)
    return campaign


def cancel(campaign_id, user, *, comment: str = "") -> Campaign:
    """Withdraw a campaign at any open point (and a halted one's leftovers): nothing more starts."""
    with transaction.atomic():
        campaign = _locked(campaign_id)
        if campaign.state not in (*Campaign.OPEN_STATES, State.HALTED):
            raise WrongState(f"campaign is {campaign.get_state_display().lower()}: nothing to cancel")
        campaign.state, campaign.finished_at = State.CANCELLED, timezone.now()
        campaign.save(update_fields=["state", "finished_at"])
        campaign.hosts.filter(state=Part.PLANNED).update(state=Part.CANCELLED)
        _record(
            Action.CAMPAIGN_CANCELLED, campaign, user, wave=campaign.current_wave, comment=comment.strip()
        )
    return campaign


def _halt(campaign: Campaign, reason: str, user=None) -> None:
    campaign.state, campaign.halt_reason, campaign.finished_at = State.HALTED, reason[:2000], timezone.now()
    campaign.save(update_fields=["state", "halt_reason", "finished_at"])
    campaign.hosts.filter(state=Part.PLANNED).update(state=Part.CANCELLED)
    _record(Action.CAMPAIGN_HALTED, campaign, user, wave=campaign.current_wave, reason=campaign.halt_reason)
    notify_campaign(
        Event.CAMPAIGN_HALTED,
        campaign,
        users=[campaign.requested_by_id, campaign.decided_by_id],
        exclude=[user],
    )


# ---------------------------------------------------------------- waves


def advance(campaign_id) -> Campaign | None:
    """Look at the running wave; start the next one (or finish, or halt) once it is done.

    Called after a campaign's request finished (``on_request_finished``, after commit), after a
    host was retired (``on_host_retired``), and by the beat task for every running campaign;
    safe to call any time.
    """
    try:
        with transaction.atomic():
            campaign = _locked(campaign_id)
            _settle(campaign)
            return campaign
    except CampaignError:
        return None


def on_request_finished(sender: Any, request: PruneRequest, **kwargs: Any) -> None:
    """Receiver of ``request_finished``: the request's campaign looks at its wave after commit
    (so the finished state is visible and no request lock is held while it takes its own)."""
    campaign_id = request.campaign_id
    if campaign_id is not None:
        transaction.on_commit(lambda: advance(campaign_id))


def on_host_retired(sender: Any, host: Host, **kwargs: Any) -> None:
    """Receiver of ``host_retired``: a campaign waiting on this host's part must not wait for
    an answer that cannot come; it looks again after commit."""
    campaigns = set(
        host.prune_requests.filter(state__in=PruneRequest.OPEN_STATES, campaign__isnull=False).values_list(
            "campaign_id", flat=True
        )
    )
    if campaigns:
        transaction.on_commit(lambda: [advance(c) for c in campaigns])


def advance_all() -> int:
    """The beat task: expire stale proposals and move every running campaign along."""
    expire_stale()
    ids = list(Campaign.objects.filter(state=State.RUNNING).values_list("id", flat=True))
    for campaign_id in ids:
        advance(campaign_id)
    return len(ids)


def _settle(campaign: Campaign) -> None:
    """Under the campaign's lock: move finished parts on, and start waves while they finish at once."""
    while campaign.state == State.RUNNING:
        parts = list(
            campaign.hosts.filter(wave=campaign.current_wave)
            .select_related("host", "request")
            .order_by("host__name")
        )
        _update_parts(parts)
        if any(p.state == Part.SENT for p in parts):
            return
        failed = [p for p in parts if p.state == Part.FAILED]
        counted = [p for p in parts if p.state in (Part.DONE, Part.FAILED)]
        ratio = len(failed) / len(counted) if counted else 0.0
        wave = campaign.current_wave
        _record(
            Action.WAVE_FINISHED,
            campaign,
            wave=wave,
            hosts=len(parts),
            failed=len(failed),
            skipped=sum(1 for p in parts if p.state == Part.SKIPPED),
            failure_ratio=round(ratio, 4),
        )
        if failed and ratio > campaign.failure_threshold:
            names = ", ".join(f"{p.host.name} ({p.note})" if p.note else p.host.name for p in failed[:5])
            _halt(
                campaign,
                f"{wave_name(wave)}: {len(failed)} of {len(counted)} host{'s' if len(counted) != 1 else ''} "
                f"failed (threshold {campaign.failure_threshold:.0%}): {names}",
            )
            return
        later = campaign.hosts.filter(wave__gt=wave).order_by("wave").values_list("wave", flat=True).first()
        if later is None:
            campaign.state, campaign.finished_at = State.COMPLETED, timezone.now()
            campaign.save(update_fields=["state", "finished_at"])
            _record(
                Action.CAMPAIGN_FINISHED,
                campaign,
                state=campaign.state,
                bytes_reclaimed=bytes_moved(campaign),
            )
            notify_campaign(Event.CAMPAIGN_FINISHED, campaign, users=[campaign.requested_by_id])
            return
        campaign.current_wave = later
        campaign.save(update_fields=["current_wave"])
        _start_wave(campaign, later)


def wave_name(wave: int) -> str:
    return "canary wave" if wave == 0 else f"wave {wave}"


def _update_parts(parts: list[CampaignHost]) -> None:
    """Sent parts whose request finished become done or failed; a retired host's open part is
    skipped (its answer can never be trusted, so waiting would stall the campaign)."""
    for part in parts:
        if part.state != Part.SENT:
            continue
        request = part.request
        if request is None:
            part.state, part.note = Part.FAILED, "its request is gone"
        elif request.state in FINISHED_REQUEST_STATES:
            errors = request.items.filter(outcome=PruneItem.Outcome.ERROR).count()
            if request.state == ReqState.FAILED or errors:
                part.state = Part.FAILED
                part.note = f"request {request.short_id} {request.get_state_display().lower()}" + (
                    f", {errors} error{'s' if errors != 1 else ''}" if errors else ""
                )
            else:
                part.state = Part.DONE
                part.note = f"request {request.short_id} {request.get_state_display().lower()}"
        elif part.host.status == part.host.Status.RETIRED:
            part.state, part.note = Part.SKIPPED, "retired during the campaign"
            part.skip_reason = "retired during the campaign"
        else:
            continue
        part.save(update_fields=["state", "note", "skip_reason"])


def _start_wave(campaign: Campaign, wave: int) -> None:
    """Open one approved request per host of ``wave`` (sent on commit)."""
    parts = list(
        campaign.hosts.filter(wave=wave, state=Part.PLANNED).select_related("host").order_by("host__name")
    )
    opened = skipped = 0
    for part in parts:
        host = part.host
        if not host.accepts_orders:
            reason = (
                "retired during the campaign" if host.status == host.Status.RETIRED else "no longer accepted"
            )
            part.state, part.skip_reason = Part.SKIPPED, reason
            part.save(update_fields=["state", "skip_reason"])
            skipped += 1
            continue
        files = [
            Identity(
                f["path"],
                f["size"],
                f["mtime_ns"],
                f["sha256"],
                f["known_to_aspose"],
                f.get("store", Store.LLM.value),
            )
            for f in part.files
            if campaign.allow_last_copy or not f["kept"]
        ]
        if not campaign.allow_last_copy:
            files = _without_last_copies(campaign, host, files)
        busy = workflow.keys_in_open_requests(host, files)
        files = [f for f in files if (f.store, f.path) not in busy]
        if not files:
            part.state, part.note = Part.DONE, "nothing left to remove (the last copy in the fleet stays)"
            part.save(update_fields=["state", "note"])
            continue
        request = workflow.open_campaign_request(
            campaign=campaign,
            host=host,
            files=files,
            reason=f"campaign {campaign.short_id}: {campaign.reason}"[:2000],
            policy=campaign.policy or "campaign",
        )
        part.state, part.request = Part.SENT, request
        part.save(update_fields=["state", "request"])
        opened += 1
    _record(Action.WAVE_STARTED, campaign, wave=wave, hosts=len(parts), opened=opened, skipped=skipped)


def _without_last_copies(campaign: Campaign, host, files: list[Identity]) -> list[Identity]:
    """Drop files no host outside this campaign's already-sent parts still holds.

    The plan kept one copy; this re-check at each wave start covers a fleet that changed since
    (another host deleted its copy meanwhile).
    """
    from ..models import Host, ModelFile

    if not files:
        return files
    sent_hosts = set(
        campaign.hosts.filter(state__in=(Part.SENT, Part.DONE, Part.FAILED)).values_list("host_id", flat=True)
    )
    sent_hosts.add(host.pk)
    live = (
        Host.objects.exclude(status=Host.Status.RETIRED)
        .exclude(pk__in=sent_hosts)
        .exclude(current_snapshot=None)
    )
    held = set(
        ModelFile.objects.filter(
            sha256__in={f.sha256 for f in files}, snapshot_id__in=live.values("current_snapshot_id")
        ).values_list("sha256", flat=True)
    )
    return [f for f in files if f.sha256 in held]


# ---------------------------------------------------------------- reading


def bytes_moved(campaign: Campaign) -> int:
    """What the campaign's requests took out of the model folders (quarantined or deleted)."""
    return campaign.requests.aggregate(total=Sum("bytes_reclaimed"))["total"] or 0


def bytes_split(campaign: Campaign) -> tuple[int, int]:
    """(still in quarantine, freed on disk) over the campaign's requests, in one query.

    The sum of each part's ``part_bytes``, the request's own counters (``PruneRequest
    .bytes_in_quarantine`` and ``bytes_freed``), so the campaign's figures are its rows' added up:
    a file a restore moved back is in neither, and what a purge freed is what the purge report
    counted. The two are never summed into one "freed" figure on a page.
    """
    requests = campaign.requests.only(
        "kind", "mode", "bytes_reclaimed", "bytes_purged", "bytes_restored", "bytes_gone"
    )
    parts = [part_bytes(r) for r in requests.order_by()]
    return sum(q for q, _ in parts), sum(f for _, f in parts)


def part_bytes(request: PruneRequest | None) -> tuple[int, int]:
    """(in quarantine, freed on disk) for one host's part, from its request's own counters."""
    return (request.bytes_in_quarantine, request.bytes_freed) if request is not None else (0, 0)


@dataclass(frozen=True)
class Progress:
    hosts: int
    done: int
    failed: int
    skipped: int
    sent: int
    planned: int
    bytes_planned: int
    # Moved aside but still on the hosts' disks, and given back to the disks (deleted or purged).
    bytes_in_quarantine: int
    bytes_freed: int

    @property
    def taking_part(self) -> int:
        return self.hosts - self.skipped

    @property
    def percent(self) -> int:
        finished = self.done + self.failed
        return round(100 * finished / self.taking_part) if self.taking_part else 100


def progress(campaign: Campaign) -> Progress:
    counts = {s: 0 for s in Part.values}
    planned_bytes = 0
    for state, size in campaign.hosts.values_list("state", "bytes_planned"):
        counts[state] += 1
        if state != Part.SKIPPED:
            planned_bytes += size
    in_quarantine, on_disk = bytes_split(campaign)
    return Progress(
        hosts=sum(counts.values()),
        done=counts[Part.DONE],
        failed=counts[Part.FAILED],
        skipped=counts[Part.SKIPPED] + counts[Part.CANCELLED],
        sent=counts[Part.SENT],
        planned=counts[Part.PLANNED],
        bytes_planned=planned_bytes,
        bytes_in_quarantine=in_quarantine,
        bytes_freed=on_disk,
    )


def propose_free_space(
    group: HostGroup,
    need: int,
    *,
    user,
    unused_days: int = 30,
    allow_known: bool = False,
    allow_last_copy: bool = False,
):
    """A group's "free X" plan (``capacity/planner.py``) as a campaign: the ``free_space``
    policy on the group, canary first, then the rest, re-planned by the campaign on the
    inventories of now; an approver decides. Here, not in the planner: campaigns sit above
    the capacity policies they run."""
    spec = planning.Spec(
        target_kind=Campaign.Target.GROUP,
        rule_kind=Campaign.Rule.POLICY,
        group=group,
        policy="free_space",
        policy_params={
            "bytes": need,
            "unused_days": unused_days,
            "allow_known": int(allow_known),
            "allow_last_copy": int(allow_last_copy),
        },
        canary_size=1,
    )
    try:
        return propose(
            spec, user=user, reason=f"free {capacity_planner.human(need)} on each host of group {group.name}"
        )
    except CampaignError as exc:
        raise capacity_planner.PlanError(str(exc)) from None
