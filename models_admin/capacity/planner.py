"""Free X GB on this host: the smallest set of safe deletions in a stated order, as a preview.

The order and the safety rules are ``candidates``' (unused first, largest first; then least
recently used; never in use, never Aspose's own file or the fleet's last copy unless allowed).
The plan is the shortest prefix of that order that frees at least X: no shorter prefix does,
and inside the unused group largest-first means no smaller set of unused files could either.
A plan is a preview; ``propose`` turns it into an ordinary prune request (two-person rule),
re-planned on the same inventory so what is proposed is what was shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.template.defaultfilters import filesizeformat

from ..approvals import workflow
from ..fleet import labels
from ..models import Host, HostGroup, PruneRequest
from . import candidates as cands

# As the pages show sizes (Django's filesizeformat): 1 GB is 1024**3 bytes, so "free 1 GB"
# frees what the page then calls 1 GB. The IEC names mean the same.
_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 2**10,
    "m": 2**20,
    "mb": 2**20,
    "g": 2**30,
    "gb": 2**30,
    "t": 2**40,
    "tb": 2**40,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$", re.IGNORECASE)


def human(n: int) -> str:
    """A size in words for a reason (plain text, stored and shown escaped): "1.0 GB"."""
    return filesizeformat(n).replace("\xa0", " ")


class PlanError(workflow.WorkflowError):
    """A plan that cannot be made or proposed; ``str()`` is fit to show the user."""


def parse_amount(text: str) -> int:
    """Bytes from "1 GB", "500MB", "1.5 GiB" or a plain number of bytes (GB = GiB = 2^30, as pages show)."""
    match = _AMOUNT.match(text or "")
    if not match or match.group(2).lower() not in _UNITS:
        raise PlanError(f"say how much to free, like 1 GB or 500 MB (not {text!r})")
    amount = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    if amount <= 0:
        raise PlanError("the amount to free must be more than zero")
    return amount


@dataclass
class Step:
    candidate: cands.Candidate
    cumulative: int

    @property
    def file(self):
        return self.candidate.file

    @property
    def bytes(self) -> int:
        return self.candidate.size

    @property
    def why(self) -> str:
        return self.candidate.why


@dataclass
class Plan:
    host: Host
    need: int
    now: datetime
    unused_days: int
    snapshot_id: int | None
    steps: list[Step] = field(default_factory=list)
    freed: int = 0
    # Why the files left out were left out: reason -> (files, bytes).
    excluded: dict[str, tuple[int, int]] = field(default_factory=dict)
    available: int = 0  # what every proposable file together would free

    @property
    def enough(self) -> bool:
        return self.freed >= self.need

    @property
    def short(self) -> int:
        return max(0, self.need - self.freed)

    @property
    def files(self):
        return [s.file for s in self.steps]


def plan_host(
    host: Host,
    need: int,
    *,
    unused_days: int = 30,
    allow_known: bool = False,
    allow_last_copy: bool = False,
    now: datetime | None = None,
) -> Plan:
    """The preview for freeing ``need`` bytes on ``host`` (nothing is written)."""
    found = cands.collect(
        host, unused_days=unused_days, allow_known=allow_known, allow_last_copy=allow_last_copy, now=now
    )
    plan = Plan(host, need, found.now, unused_days, host.current_snapshot_id)
    chosen, freed = cands.shortest_prefix(found.ordered, need)
    total = 0
    for c in chosen:
        total += c.size
        plan.steps.append(Step(c, total))
    plan.freed = freed
    plan.available = sum(c.size for c in found.ordered)
    for c in found.excluded:
        reason = c.excluded.split(" by ")[0]  # "in use now by python3 (pid 1)" groups as "in use now"
        files, size = plan.excluded.get(reason, (0, 0))
        plan.excluded[reason] = (files + 1, size + c.size)
    return plan


def propose(
    host: Host,
    need: int,
    *,
    user,
    shown_snapshot_id: int | None,
    shown_paths: list[tuple[str, str]] | None = None,
    unused_days: int = 30,
    allow_known: bool = False,
    allow_last_copy: bool = False,
) -> PruneRequest:
    """Turn the plan into a prune request, if it is still the plan the user was shown.

    Re-planned under the host's row lock (a second click or a concurrent proposal waits, then
    finds the files already in an open request and plans differently, so it is refused here
    instead of proposing a second, different set). Refused when the inventory changed since
    the preview, or the plan is no longer the one shown.
    """
    with transaction.atomic():
        host = Host.objects.select_for_update().get(pk=host.pk)
        plan = plan_host(
            host, need, unused_days=unused_days, allow_known=allow_known, allow_last_copy=allow_last_copy
        )
        if plan.snapshot_id != shown_snapshot_id:
            raise PlanError("the host sent a new inventory since this preview: look at the new plan")
        if shown_paths is not None and [(f.store, f.path) for f in plan.files] != shown_paths:
            raise PlanError("the plan changed since this preview (files were proposed or used): look again")
        if not plan.steps:
            raise PlanError("nothing on this host can be proposed to free space")
        reason = f"free {human(need)} on {host.name}: plan of {len(plan.steps)} file(s), {human(plan.freed)}"
        if not plan.enough:
            reason += f" (all it safely can, short of {human(need - plan.freed)})"
        return workflow.propose(host=host, files=plan.files, reason=reason, user=user, policy="plan")


# ---------------------------------------------------------------- a group


@dataclass
class GroupPlan:
    """``plan_host`` on every active host of a group, each asked to free ``need`` (disks are per
    host: "free 1 GB on group prod" frees 1 GB on each of its hosts)."""

    group: HostGroup
    need: int
    plans: list[Plan] = field(default_factory=list)

    @property
    def freed(self) -> int:
        return sum(p.freed for p in self.plans)

    @property
    def files(self) -> int:
        return sum(len(p.steps) for p in self.plans)

    @property
    def short_hosts(self) -> list[str]:
        return [p.host.name for p in self.plans if not p.enough]


def plan_group(
    group: HostGroup,
    need: int,
    *,
    unused_days: int = 30,
    allow_known: bool = False,
    allow_last_copy: bool = False,
) -> GroupPlan:
    """The preview of freeing ``need`` bytes on each active host of ``group`` (nothing is written)."""
    hosts = labels.group_hosts(group, Host.objects.filter(status=Host.Status.ACTIVE)).order_by("name")
    result = GroupPlan(group, need)
    for host in hosts:
        result.plans.append(
            plan_host(
                host, need, unused_days=unused_days, allow_known=allow_known, allow_last_copy=allow_last_copy
            )
        )
    return result
