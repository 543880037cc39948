"""What a campaign would do, host by host: the preview an operator sees and the approver approves.

Cost is a handful of queries whatever the fleet size (the benchmark plans 1,000 hosts): the
target hosts, every file of their current snapshots (one query), the paths already in open
requests (one query) and the fleet's holders of every selected sha256 (one query).

The last copy of a file in the fleet is never planned for removal by default: when every
host holding a sha256 is in the campaign, the copy on the host planned last is marked
``kept`` (the approver may tick "allow removing the last copy").
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from ..capacity import policies
from ..errors import DomainError
from ..fleet import labels
from ..models import Campaign, Host, HostGroup, ModelFile, PruneItem, PruneRequest

Target = Campaign.Target
Rule = Campaign.Rule


class PlanError(DomainError):
    """A target or rule that cannot be planned; ``str()`` is fit to show the user."""


@dataclass(frozen=True)
class Spec:
    """What an operator asks for: a target and a rule (and the waves)."""

    target_kind: str
    rule_kind: str
    group: HostGroup | None = None
    selector: Mapping[str, str] = field(default_factory=dict)
    model_sha256: str = ""
    model_name: str = ""
    policy: str = ""
    policy_params: Mapping[str, Any] = field(default_factory=dict)
    canary_size: int = 1
    wave_size: int | None = None
    wave_percent: int | None = None
    failure_threshold: float = 0.0

    def target_label(self) -> str:
        if self.target_kind == Target.GROUP and self.group is not None:
            return f"group {self.group.name}"
        if self.target_kind == Target.SELECTOR:
            return labels.format_selector(self.selector)
        return f"every host holding {self.model_name or self.model_sha256[:12]}"


@dataclass
class HostPlan:
    host: Host
    files: list[dict[str, Any]] = field(default_factory=list)
    skipped: str = ""
    wave: int | None = None

    @property
    def bytes(self) -> int:
        return sum(f["size"] for f in self.files if not f["kept"])

    @property
    def removes(self) -> list[dict[str, Any]]:
        return [f for f in self.files if not f["kept"]]


@dataclass
class Preview:
    spec: Spec
    hosts: list[HostPlan]
    warnings: list[str]
    cleaned_params: dict[str, Any]

    @property
    def planned(self) -> list[HostPlan]:
        return [h for h in self.hosts if not h.skipped]

    @property
    def skipped(self) -> list[HostPlan]:
        return [h for h in self.hosts if h.skipped]

    @property
    def bytes(self) -> int:
        return sum(h.bytes for h in self.planned)

    @property
    def file_count(self) -> int:
        return sum(len(h.removes) for h in self.planned)

    @property
    def wave_count(self) -> int:
        waves = {h.wave for h in self.planned if h.wave is not None}
        return len(waves)

    @property
    def known_count(self) -> int:
        return sum(1 for h in self.planned for f in h.removes if f["known_to_aspose"])

    @property
    def kept_count(self) -> int:
        return sum(1 for h in self.planned for f in h.files if f["kept"])


def validate(spec: Spec) -> dict[str, Any]:
    """Check the spec; returns the policy's cleaned parameters. Raises PlanError."""
    if spec.target_kind == Target.GROUP and spec.group is None:
        raise PlanError("pick a group")
    if spec.target_kind == Target.SELECTOR and not spec.selector:
        raise PlanError("a selector needs at least one label (env=prod): an empty one would match every host")
    if spec.target_kind == Target.MODEL and len(spec.model_sha256) != 64:
        raise PlanError("name the model by its sha256")
    if spec.target_kind not in Target.values:
        raise PlanError(f"unknown target {spec.target_kind!r}")
    if spec.canary_size < 1:
        raise PlanError("the canary wave needs at least one host")
    if spec.wave_size is not None and spec.wave_size < 1:
        raise PlanError("a wave needs at least one host")
    if spec.wave_percent is not None and not 1 <= spec.wave_percent <= 100:
        raise PlanError("a wave's percentage is between 1 and 100")
    if not 0 <= spec.failure_threshold < 1:
        raise PlanError("the failure threshold is a ratio from 0 (any failure halts) to under 1")
    if spec.rule_kind == Rule.IDENTITY:
        if len(spec.model_sha256) != 64 or not spec.model_name:
            raise PlanError("name the model: its file name and sha256")
        return {}
    if spec.rule_kind == Rule.POLICY:
        try:
            return policies.get_policy(spec.policy).clean(spec.policy_params)
        except policies.PolicyError as exc:
            raise PlanError(str(exc)) from None
    raise PlanError(f"unknown rule {spec.rule_kind!r}")


def target_hosts(spec: Spec) -> QuerySet[Host]:
    """The hosts the target names (only approver-set labels match; retired ones included, to be
    shown as skipped)."""
    hosts = Host.objects.all()
    if spec.target_kind == Target.GROUP:
        assert spec.group is not None
        return labels.group_hosts(spec.group, hosts)
    if spec.target_kind == Target.SELECTOR:
        return labels.matching(hosts, spec.selector)
    holding = ModelFile.objects.filter(sha256=spec.model_sha256, snapshot_id__in=_current_snapshots())
    return hosts.filter(current_snapshot_id__in=holding.values("snapshot_id"))


def _current_snapshots() -> QuerySet:
    return (
        Host.objects.exclude(status=Host.Status.RETIRED)
        .exclude(current_snapshot=None)
        .values("current_snapshot_id")
    )


def skip_reason(host: Host, now: datetime) -> str:
    """Why ``host`` takes no part, or "" (shown in the preview; one definition)."""
    if host.status == Host.Status.RETIRED:
        return "retired"
    if host.status != Host.Status.ACTIVE:
        return f"{host.get_status_display().lower()}: no orders are sent to it"
    presence = host.presence(now)
    if presence == "never" or host.current_snapshot_id is None:
        return "no inventory yet"
    if presence in ("offline", "missing"):
        since = timezone.localtime(host.last_seen)
        return f"{presence} since {since:%Y-%m-%d %H:%M}"
    return ""


def preview(spec: Spec, now: datetime | None = None) -> Preview:
    """The campaign ``spec`` would run now, host by host; writes nothing. Raises PlanError."""
    now = now or timezone.now()
    params = validate(spec)
    hosts = list(target_hosts(spec).order_by("name"))
    plans = [HostPlan(h, skipped=skip_reason(h, now)) for h in hosts]
    # skip_reason leaves out hosts without a snapshot; the filter says so to the type checker.
    live = {p.host.current_snapshot_id: p for p in plans if not p.skipped and p.host.current_snapshot_id}
    files = ModelFile.objects.filter(snapshot_id__in=list(live))
    if spec.rule_kind == Rule.IDENTITY:
        files = files.filter(sha256=spec.model_sha256, name=spec.model_name)
    by_snapshot: dict[int, list[ModelFile]] = defaultdict(list)
    for f in files.only(
        "snapshot_id", "store", "path", "name", "size", "mtime_ns", "sha256", "known_to_aspose", "is_symlink"
    ):
        by_snapshot[f.snapshot_id].append(f)
    busy = _busy_paths([p.host.pk for p in live.values()])
    policy = policies.get_policy(spec.policy) if spec.rule_kind == Rule.POLICY else None
    for snapshot_id, plan in live.items():
        candidates = by_snapshot.get(snapshot_id, [])
        if policy is not None:
            candidates = policy.select(candidates, now, **params)
        chosen = [
            f
            for f in candidates
            if not f.is_symlink and f.sha256 and (plan.host.pk, f.store, f.path) not in busy
        ]
        if not chosen:
            plan.skipped = "already in an open request" if candidates else "nothing matches the rule"
            continue
        plan.files = [
            {
                "store": f.store,
                "path": f.path,
                "size": f.size,
                "mtime_ns": f.mtime_ns,
                "sha256": f.sha256,
                "known_to_aspose": f.known_to_aspose,
                "last_copy": False,
                "kept": False,
            }
            for f in sorted(chosen, key=lambda f: f.path)
        ]
    planned = [p for p in plans if not p.skipped]
    _assign_waves(planned, spec)
    warnings = _mark_last_copies(planned)
    known = sum(1 for p in planned for f in p.files if f["known_to_aspose"])
    if known:
        warnings.append(
            f"{known} file{'s' if known != 1 else ''} Aspose loads by itself: removing "
            f"{'them' if known != 1 else 'it'} breaks its AI post-processing on those hosts"
        )
    return Preview(spec, plans, warnings, params)


def _busy_paths(host_ids: list[int]) -> set[tuple[int, str, str]]:
    return set(
        PruneItem.objects.filter(
            request__host_id__in=host_ids,
            request__kind=PruneRequest.Kind.PRUNE,
            request__state__in=PruneRequest.OPEN_STATES,
        ).values_list("request__host_id", "store", "path")
    )


def _assign_waves(planned: list[HostPlan], spec: Spec) -> None:
    """Wave 0 is the canary; then waves of ``wave_size`` hosts, or ``wave_percent`` of the rest,
    or the rest at once."""
    canary, rest = planned[: spec.canary_size], planned[spec.canary_size :]
    for plan in canary:
        plan.wave = 0
    if spec.wave_size:
        size = spec.wave_size
    elif spec.wave_percent:
        size = max(1, math.ceil(len(rest) * spec.wave_percent / 100))
    else:
        size = max(1, len(rest))
    for i, plan in enumerate(rest):
        plan.wave = 1 + i // size


def _mark_last_copies(planned: list[HostPlan]) -> list[str]:
    """Keep one copy of every file the campaign would remove from every host holding it."""
    shas = {f["sha256"] for p in planned for f in p.files}
    if not shas:
        return []
    holders: dict[str, set[int]] = defaultdict(set)
    rows = ModelFile.objects.filter(sha256__in=shas, snapshot_id__in=_current_snapshots()).values_list(
        "sha256", "snapshot__host_id"
    )
    for sha, host_id in rows:
        holders[sha].add(host_id)
    removers: dict[str, list[tuple[HostPlan, dict[str, Any]]]] = defaultdict(list)
    for plan in planned:
        for f in plan.files:
            removers[f["sha256"]].append((plan, f))
    warnings = []
    for sha, entries in removers.items():
        if holders[sha] - {p.host.pk for p, _f in entries}:
            continue
        plan, last = entries[-1]  # planned last: the copy kept unless the approver allows
        last["last_copy"] = last["kept"] = True
        warnings.append(
            f"{last['path']} ({sha[:12]}): the campaign holds every copy in the fleet; the one on "
            f"{plan.host.name} is kept unless the approver allows removing the last copy"
        )
    return warnings
