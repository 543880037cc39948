"""Which disk watermark applies to a host: the one rule, used by the alert and by scheduled runs.

In order: the high/low marks of the host's own scheduled watermark policy; else the strictest
(lowest high mark) of the groups it belongs to that have marks; else ``OCRDASH_WATERMARK_HIGH``
and ``OCRDASH_WATERMARK_LOW`` (85 % / 80 % by default). Group membership is by the labels
approvers set (``labels.group_hosts``), as everywhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings
from django_celery_beat.models import PeriodicTask

from ..fleet import labels
from ..models import Host, HostGroup
from ..task_names import POLICY_TASK, policy_schedule_name


@dataclass(frozen=True)
class Marks:
    high: int  # percent used above which the disk is "over"
    low: int  # percent used to get back under
    source: str  # in words, for messages and the audit trail

    def over(self, used: int, total: int) -> bool:
        return total > 0 and used * 100 > self.high * total

    def under_low(self, used: int, total: int) -> bool:
        return total > 0 and used * 100 < self.low * total


def default_marks() -> Marks:
    return Marks(settings.OCRDASH["WATERMARK_HIGH"], settings.OCRDASH["WATERMARK_LOW"], "the default")


def group_marks(group: HostGroup) -> Marks | None:
    if group.watermark_high is None:
        return None
    low = group.watermark_low if group.watermark_low is not None else max(group.watermark_high - 5, 0)
    return Marks(group.watermark_high, low, f"group {group.name}")


def validate(high: int, low: int) -> None:
    if not 0 <= low < high <= 100:
        raise ValueError(f"need 0 <= low < high <= 100, got low={low} high={high}")


def scheduled_marks(host_name: str) -> Marks | None:
    """The marks of ``host_name``'s own enabled watermark schedule, or None.

    Read here from the beat row that ``capacity/scheduled.py`` writes (its params were checked
    when saved), not through the policies: they select files by this module's rule, and
    ingest reaches this module through the disk alerts.
    """
    task = PeriodicTask.objects.filter(
        task=POLICY_TASK, name=policy_schedule_name("watermark", host=host_name), enabled=True
    ).first()
    if task is None:
        return None
    try:
        params = json.loads(task.kwargs or "{}").get("params") or {}
        default = default_marks()
        high, low = int(params.get("high", default.high)), int(params.get("low", default.low))
        validate(high, low)
    except (AttributeError, TypeError, ValueError):
        return None  # a row edited by hand into nonsense: the group's or the default marks
    return Marks(high, low, "its watermark schedule")


def marks_for(host: Host) -> Marks:
    """The watermark that applies to ``host`` now (see the module's docstring for the order)."""
    own = scheduled_marks(host.name)
    if own is not None:
        return own
    one = Host.objects.filter(pk=host.pk)
    found = [
        m
        for g in HostGroup.objects.filter(watermark_high__isnull=False).order_by("name")
        if (m := group_marks(g)) is not None and labels.group_hosts(g, one).exists()
    ]
    if found:
        return min(found, key=lambda m: m.high)
    return default_marks()
