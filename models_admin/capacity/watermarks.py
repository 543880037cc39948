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
from django.db import connection
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
    return _schedule_marks(task.kwargs) if task is not None else None


def _schedule_marks(kwargs: str | None) -> Marks | None:
    try:
        params = json.loads(kwargs or "{}").get("params") or {}
        default = default_marks()
        high, low = int(params.get("high", default.high)), int(params.get("low", default.low))
        validate(high, low)
    except (AttributeError, TypeError, ValueError):
        return None  # a row edited by hand into nonsense: the group's or the default marks
    return Marks(high, low, "its watermark schedule")


_TASK = PeriodicTask._meta.db_table
_GROUP = HostGroup._meta.db_table
_HOST = Host._meta.db_table
_MEMBERS = HostGroup.hosts.through._meta
_MEMBER_GROUP = _MEMBERS.get_field("hostgroup").column
_MEMBER_HOST = _MEMBERS.get_field("host").column
# The whole rule's reads in one statement (an inventory's alert check runs it under the host's
# lock): the host's own schedule row, and the groups with marks the host belongs to, by the
# rule of labels.group_hosts: a selector group by the host's approver-set labels (``@>``:
# every pair of the selector among them, as labels.matching; label values are strings), any
# other by its explicit list. Read from the host's row, not from a Host object a caller may
# hold from before a label changed.
_MARKS_SQL = f"""
SELECT 'own', kwargs, NULL, NULL, NULL FROM {_TASK} WHERE task = %s AND name = %s AND enabled
UNION ALL
SELECT 'group', NULL, g.name, g.watermark_high, g.watermark_low FROM {_GROUP} g
WHERE g.watermark_high IS NOT NULL AND CASE
    WHEN COALESCE(g.selector, '{{}}'::jsonb) = '{{}}'::jsonb THEN EXISTS (
        SELECT 1 FROM {_MEMBERS.db_table} m WHERE m.{_MEMBER_GROUP} = g.id AND m.{_MEMBER_HOST} = %s)
    ELSE EXISTS (SELECT 1 FROM {_HOST} h WHERE h.id = %s AND h.labels @> g.selector)
END
"""


def marks_for(host: Host) -> Marks:
    """The watermark that applies to ``host`` now (see the module's docstring for the order).

    On PostgreSQL one statement, whatever the number of groups; elsewhere two and one per
    group with marks.
    """
    if connection.vendor != "postgresql":
        return _marks_for_orm(host)
    schedule = policy_schedule_name("watermark", host=host.name)
    with connection.cursor() as cursor:
        cursor.execute(_MARKS_SQL, [POLICY_TASK, schedule, host.pk, host.pk])
        rows = cursor.fetchall()
    for kind, kwargs, *_ in rows:
        if kind == "own" and (own := _schedule_marks(kwargs)) is not None:
            return own
    found = [
        m
        for kind, _, name, high, low in sorted(rows, key=lambda row: row[2] or "")
        if kind == "group"
        and (m := group_marks(HostGroup(name=name, watermark_high=high, watermark_low=low))) is not None
    ]
    if found:
        return min(found, key=lambda m: m.high)
    return default_marks()


def _marks_for_orm(host: Host) -> Marks:
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
