"""Capacity policies on a schedule: the watermark and "not used for N days", per host or group.

Kept as django-celery-beat rows like the inventory schedules (``schedules.py``): beat reads
them from the database, so a schedule saved on a page runs without a restart. One row per
(policy, host) or (policy, group), named ``ocrdash: policy <policy> on host|group <name>``, its
kwargs ``{"policy", "host"|"group", "params"}``. A group's watermark run takes its high/low
marks from the group itself at every run (``watermarks.group_marks``), so changing the marks
needs no schedule change.

Every run goes through ``policies.run_policy``: it only *proposes* a request (the two-person
rule still decides), and every run writes one POLICY_RUN audit event per host saying what it
proposed or why nothing. Every change of a schedule writes a SETTINGS_CHANGED event.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.template.defaultfilters import filesizeformat
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from ..approvals.workflow import actor_name
from ..fleet import labels
from ..models import AuditEvent, Host, HostGroup
from ..schedules import interval_minutes
from ..task_names import POLICY_TASK, policy_schedule_name
from . import candidates, policies, watermarks

SCHEDULABLE = ("watermark", "not_used_for")
MIN_INTERVAL_MINUTES = 15
MAX_INTERVAL_MINUTES = 7 * 24 * 60


def task_name(policy: str, *, host: str = "", group: str = "") -> str:
    return policy_schedule_name(policy, host=host, group=group)


@dataclass(frozen=True)
class Schedule:
    policy: str
    host: str
    group: str
    minutes: int
    params: dict[str, Any]
    enabled: bool

    @property
    def target(self) -> str:
        return f"host {self.host}" if self.host else f"group {self.group}"


def _minutes(task: PeriodicTask) -> int:
    return interval_minutes(task) or 0


def _kwargs(task: PeriodicTask) -> dict[str, Any]:
    try:
        kwargs = json.loads(task.kwargs or "{}")
    except ValueError:
        return {}
    return kwargs if isinstance(kwargs, dict) else {}


def all_schedules() -> list[Schedule]:
    """Every policy schedule, for the settings page: one query."""
    rows = []
    for task in PeriodicTask.objects.select_related("interval").filter(task=POLICY_TASK):
        kw = _kwargs(task)
        rows.append(
            Schedule(
                policy=str(kw.get("policy", "")),
                host=str(kw.get("host", "")),
                group=str(kw.get("group", "")),
                minutes=_minutes(task),
                params=dict(kw.get("params") or {}),
                enabled=task.enabled,
            )
        )
    return sorted(rows, key=lambda s: (s.policy, s.group, s.host))


def set_schedule(
    policy: str,
    minutes: int | None,
    user,
    *,
    host: Host | None = None,
    group: HostGroup | None = None,
    params: dict[str, Any] | None = None,
) -> bool:
    """Run ``policy`` on ``host`` or ``group`` every ``minutes`` (None removes the schedule).

    The params are checked now, so a schedule never fails at every run on a typo. False when
    nothing changed. The row is locked, so two approvers saving at once apply one after the other.
    """
    if policy not in SCHEDULABLE:
        raise policies.PolicyError(f"only {', '.join(SCHEDULABLE)} can be scheduled, not {policy!r}")
    if (host is None) == (group is None):
        raise policies.PolicyError("a policy schedule is for one host or one group")
    if minutes is not None and not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        raise policies.PolicyError(f"an interval must be between {MIN_INTERVAL_MINUTES} minutes and 7 days")
    cleaned = policies.get_policy(policy).clean(params or {}) if minutes is not None else {}
    if group is not None and policy == "watermark":
        cleaned.pop("high", None), cleaned.pop("low", None)  # the group's own marks, at each run
    target = {"host": host.name} if host is not None else {"group": group.name}  # type: ignore[union-attr]
    name = task_name(policy, host=target.get("host", ""), group=target.get("group", ""))
    with transaction.atomic():
        task = PeriodicTask.objects.select_for_update().filter(name=name).first()
        before = {"minutes": _minutes(task), "params": _kwargs(task).get("params")} if task else None
        after = {"minutes": minutes, "params": cleaned} if minutes is not None else None
        if before == after or (before is None and after is None):
            return False
        if minutes is None:
            if task is not None:
                task.delete()
        else:
            task = task or PeriodicTask(name=name, task=POLICY_TASK)
            task.kwargs = json.dumps({"policy": policy, **target, "params": cleaned})
            task.interval, _ = IntervalSchedule.objects.get_or_create(
                every=minutes, period=IntervalSchedule.MINUTES
            )
            task.enabled = True
            task.save()
        AuditEvent.record(
            AuditEvent.Action.SETTINGS_CHANGED,
            actor=actor_name(user),
            host=target.get("host", ""),
            setting=f"policy_schedule:{policy}:{'host' if host else 'group'}:{next(iter(target.values()))}",
            before=before,
            after=after,
        )
    return True


def set_group_marks(group: HostGroup, high: int | None, low: int | None, user) -> bool:
    """The group's watermark (None, None: none). Locked row, audited; False if unchanged."""
    if (high is None) != (low is None):
        raise ValueError("give both marks, or neither")
    if high is not None and low is not None:
        watermarks.validate(high, low)
    with transaction.atomic():
        locked = HostGroup.objects.select_for_update().get(pk=group.pk)
        before = {"high": locked.watermark_high, "low": locked.watermark_low}
        after = {"high": high, "low": low}
        if before == after:
            return False
        HostGroup.objects.filter(pk=locked.pk).update(watermark_high=high, watermark_low=low)
        group.watermark_high, group.watermark_low = high, low
        AuditEvent.record(
            AuditEvent.Action.SETTINGS_CHANGED,
            actor=actor_name(user),
            setting=f"group_watermark:{group.name}",
            before=before,
            after=after,
        )
    return True


# ---------------------------------------------------------------- running


def _why_nothing(host: Host, selection: policies.Selection) -> str:
    """In words, why a run proposed nothing: the mark not passed, or what kept each file out."""
    if host.current_snapshot_id is None:
        return "no inventory yet"
    params = selection.params
    if selection.policy.name == "watermark":
        if not host.disk_total or host.disk_free is None:
            return "the host has not reported its disk"
        used = host.disk_total - host.disk_free
        if used * 100 <= params["high"] * host.disk_total:
            return (
                f"disk {used * 100 // host.disk_total} % used, not over the high mark of {params['high']} %"
            )
    found = candidates.collect(
        host,
        unused_days=params.get("days", 30),
        allow_known=bool(params.get("allow_known")),
        allow_last_copy=bool(params.get("allow_last_copy")),
    )
    reasons: Counter[str] = Counter(c.excluded.split(" by ")[0] for c in found.excluded)
    if selection.policy.name == "not_used_for" and found.ordered:
        reasons[f"used within {params['days']} days"] += len(found.ordered)
    if not reasons:
        return "the inventory lists no files"
    return "nothing to propose: " + ", ".join(f"{n} file(s) {why}" for why, n in sorted(reasons.items()))


def run_on_host(policy: str, host: Host, params: dict[str, Any], target: str) -> dict[str, Any]:
    """One scheduled run on one host: propose (never approve) and record what happened."""
    outcome: dict[str, Any] = {"policy": policy, "schedule": target, "params": params}
    if not host.accepts_orders:
        outcome["proposed"] = None
        outcome["why_nothing"] = f"host is {host.get_status_display().lower()}"
    else:
        try:
            run = policies.run_policy(host, policy, params=params, reason=f"scheduled on {target}")
        except policies.workflow.WorkflowError as exc:
            outcome["proposed"], outcome["why_nothing"] = None, str(exc)
        else:
            if run.request is None:
                outcome["proposed"] = None
                outcome["why_nothing"] = _why_nothing(host, run.selection)
            else:
                size = sum(f.size for f in run.selection.files)
                outcome["proposed"] = str(run.request.id)
                outcome["files"] = len(run.selection.files)
                outcome["bytes"] = size
                outcome["summary"] = (
                    f"proposed request {run.request.short_id}: {len(run.selection.files)} file(s), "
                    f"{filesizeformat(size)}"
                )
    AuditEvent.record(AuditEvent.Action.POLICY_RUN, host=host.name, **outcome)
    return outcome


def run_schedule(policy: str, host: str = "", group: str = "", params: dict[str, Any] | None = None) -> list:
    """What beat runs: the schedule's policy on its host, or on every active host of its group."""
    params = dict(params or {})
    if host:
        found = Host.objects.filter(name=host).first()
        if found is None:
            return []
        return [run_on_host(policy, found, params, f"host {host}")]
    g = HostGroup.objects.filter(name=group).first()
    if g is None:
        return []
    if policy == "watermark":
        marks = watermarks.group_marks(g) or watermarks.default_marks()
        params.update(high=marks.high, low=marks.low)
    hosts = labels.group_hosts(g, Host.objects.filter(status=Host.Status.ACTIVE)).order_by("name")
    return [run_on_host(policy, h, params, f"group {group}") for h in hosts]
