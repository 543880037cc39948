"""Scheduled inventories and snapshot retention, stored as django-celery-beat rows.

Beat reads PeriodicTask/IntervalSchedule from the database (CELERY_BEAT_SCHEDULER), so a
change saved here is picked up by the running scheduler without a restart or a deploy.
The retention numbers live in the compaction task's own kwargs: the value the task runs
with and the value the settings page shows cannot drift apart.

Every change goes through a function here, which writes a SETTINGS_CHANGED audit event with
the before and after values in the same transaction.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from .inventory.compaction import Retention
from .models import AuditEvent, Host
from .security.roles import actor_name
from .task_names import COMPACT_TASK, FLEET_INVENTORY_TASK, HOST_INVENTORY_TASK, PURGE_TASK

FLEET_INVENTORY_NAME = "ocrdash: fleet inventory"
COMPACT_NAME = "ocrdash: compact snapshots"
COMPACT_EVERY_HOURS = 24
MIN_INTERVAL_MINUTES = 5  # asking a host more often only re-hashes the same files
MAX_INTERVAL_MINUTES = 7 * 24 * 60


def host_task_name(host: str) -> str:
    return f"ocrdash: inventory of {host}"


def _interval(minutes: int) -> IntervalSchedule:
    schedule, _ = IntervalSchedule.objects.get_or_create(every=minutes, period=IntervalSchedule.MINUTES)
    return schedule


def interval_minutes(task: PeriodicTask | None) -> int | None:
    """The task's interval in minutes, or None when it is off (missing or disabled)."""
    if task is None or not task.enabled or task.interval is None:
        return None
    factor = {
        IntervalSchedule.DAYS: 24 * 60,
        IntervalSchedule.HOURS: 60,
        IntervalSchedule.MINUTES: 1,
        IntervalSchedule.SECONDS: 1 / 60,
        IntervalSchedule.MICROSECONDS: 1 / 60_000_000,
    }[task.interval.period]
    return max(1, round(task.interval.every * factor))


def validate_minutes(minutes: int | None) -> None:
    if minutes is not None and not MIN_INTERVAL_MINUTES <= minutes <= MAX_INTERVAL_MINUTES:
        raise ValueError(f"an interval must be between {MIN_INTERVAL_MINUTES} minutes and 7 days")


# ---------------------------------------------------------------- reading


@dataclass
class Overview:
    fleet_minutes: int | None
    hosts: list[tuple[str, int]]  # (host name, minutes) of every enabled per-host schedule
    retention: Retention
    compaction_enabled: bool
    quarantine_days: float = 7.0
    purge_enabled: bool = False


def fleet_task() -> PeriodicTask | None:
    # Found by task, not by name: the fleet-wide row may have been created by a migration.
    return (
        PeriodicTask.objects.select_related("interval")
        .filter(task=FLEET_INVENTORY_TASK)
        .order_by("id")
        .first()
    )


def compaction_task() -> PeriodicTask | None:
    return PeriodicTask.objects.select_related("interval").filter(task=COMPACT_TASK).order_by("id").first()


def retention_of(task: PeriodicTask | None) -> Retention:
    if task is None:
        return Retention()
    try:
        return Retention(**json.loads(task.kwargs or "{}"))
    except (TypeError, ValueError):
        return Retention()  # a row edited by hand in the admin into nonsense: the defaults


def overview() -> Overview:
    """Everything the settings page shows: three queries."""
    hosts = []
    for task in PeriodicTask.objects.select_related("interval").filter(
        task=HOST_INVENTORY_TASK, enabled=True
    ):
        name = json.loads(task.kwargs or "{}").get("host")
        if name and (minutes := interval_minutes(task)):
            hosts.append((name, minutes))
    compaction = compaction_task()
    purge = purge_task()
    return Overview(
        fleet_minutes=interval_minutes(fleet_task()),
        hosts=sorted(hosts),
        retention=retention_of(compaction),
        compaction_enabled=compaction is not None and compaction.enabled,
        quarantine_days=quarantine_days_of(purge),
        purge_enabled=purge is not None and purge.enabled,
    )


def purge_task() -> PeriodicTask | None:
    return PeriodicTask.objects.select_related("interval").filter(task=PURGE_TASK).order_by("id").first()


def quarantine_days_of(task: PeriodicTask | None) -> float:
    """The retention the daily purge runs with: its kwargs, else OCRDASH_QUARANTINE_DAYS."""
    try:
        days = json.loads(task.kwargs or "{}").get("retention_days") if task is not None else None
        if days is not None:
            return float(days)
    except (TypeError, ValueError, AttributeError):
        pass  # a row edited by hand into nonsense: the configured default
    return float(settings.OCRDASH["QUARANTINE_DAYS"])


# ---------------------------------------------------------------- changing


def _record(user, setting: str, before, after, host: str = "") -> None:
    AuditEvent.record(
        AuditEvent.Action.SETTINGS_CHANGED,
        actor=actor_name(user),
        host=host,
        setting=setting,
        before=before,
        after=after,
    )


def set_fleet_interval(minutes: int | None, user) -> bool:
    """Ask every active host for an inventory every ``minutes`` (None: never). False if
    nothing changed (no audit row for a form saved as it was)."""
    validate_minutes(minutes)
    with transaction.atomic():
        task = (
            PeriodicTask.objects.select_for_update().filter(task=FLEET_INVENTORY_TASK).order_by("id").first()
        )
        before = interval_minutes(task)
        if before == minutes:
            return False
        if task is None:
            task = PeriodicTask(name=FLEET_INVENTORY_NAME, task=FLEET_INVENTORY_TASK)
        if minutes is None:
            task.enabled = False
        else:
            task.interval, task.enabled = _interval(minutes), True
        task.save()
        _record(user, "fleet_inventory_minutes", before, minutes)
    return True


def set_host_interval(host: Host, minutes: int | None, user) -> bool:
    """Give one host its own inventory schedule (None removes it)."""
    validate_minutes(minutes)
    name = host_task_name(host.name)
    with transaction.atomic():
        task = PeriodicTask.objects.select_for_update().filter(name=name).first()
        before = interval_minutes(task)
        if before == minutes:
            return False
        if minutes is None:
            task.delete()
        else:
            task = task or PeriodicTask(name=name, task=HOST_INVENTORY_TASK)
            task.kwargs = json.dumps({"host": host.name})
            task.interval, task.enabled = _interval(minutes), True
            task.save()
        _record(user, "host_inventory_minutes", before, minutes, host=host.name)
    return True


def set_retention(retention: Retention, enabled: bool, user) -> bool:
    """Store the retention the daily compaction runs with, and whether it runs at all."""
    with transaction.atomic():
        task = PeriodicTask.objects.select_for_update().filter(task=COMPACT_TASK).order_by("id").first()
        before = {**retention_of(task).as_kwargs(), "enabled": task is not None and task.enabled}
        after = {**retention.as_kwargs(), "enabled": enabled}
        if task is not None and before == after:
            return False
        if task is None:
            task = PeriodicTask(
                name=COMPACT_NAME, task=COMPACT_TASK, interval=_interval(COMPACT_EVERY_HOURS * 60)
            )
        task.kwargs = json.dumps(retention.as_kwargs())
        task.enabled = enabled
        task.save()
        _record(user, "snapshot_retention", before, after)
    return True


PURGE_NAME = "ocrdash: purge quarantine"
PURGE_EVERY_HOURS = 24
MAX_QUARANTINE_DAYS = 3650


def set_quarantine_days(days: float, enabled: bool, user) -> bool:
    """How long files stay in quarantine before the daily purge deletes them, and whether it runs."""
    if not 0 <= days <= MAX_QUARANTINE_DAYS:
        raise ValueError(f"the quarantine retention must be between 0 and {MAX_QUARANTINE_DAYS} days")
    with transaction.atomic():
        task = PeriodicTask.objects.select_for_update().filter(task=PURGE_TASK).order_by("id").first()
        before = {"days": quarantine_days_of(task), "enabled": task is not None and task.enabled}
        after = {"days": float(days), "enabled": enabled}
        if task is not None and before == after:
            return False
        if task is None:
            task = PeriodicTask(name=PURGE_NAME, task=PURGE_TASK, interval=_interval(PURGE_EVERY_HOURS * 60))
        task.kwargs = json.dumps({"retention_days": float(days)})
        task.enabled = enabled
        task.save()
        _record(user, "quarantine_days", before, after)
    return True
