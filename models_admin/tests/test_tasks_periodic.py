"""Periodic tasks: registered names, default beat rows, and what each sweep does."""

from __future__ import annotations

import importlib
from datetime import timedelta

import pytest
from django.apps import apps as django_apps
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from models_admin import tasks
from models_admin.approvals import workflow
from models_admin.models import AuditEvent, Host, PruneRequest
from ocrdash.celery import DASHBOARD_QUEUE, app, route_task

pytestmark = pytest.mark.django_db
SCHEDULED = {
    tasks.EXPIRE_TASK: 5,
    tasks.RESEND_TASK: 5,
    tasks.FLEET_INVENTORY_TASK: 60,
}


def test_default_schedules_exist_and_name_registered_tasks():
    for name, minutes in SCHEDULED.items():
        row = PeriodicTask.objects.get(task=name)
        assert row.enabled and row.interval.every == minutes and row.interval.period == "minutes"
        assert name in app.tasks
        assert route_task(name, [], {}, {}) == {"queue": DASHBOARD_QUEUE}


def test_the_schedule_migration_is_idempotent_and_keeps_edits():
    migration = importlib.import_module("models_admin.migrations.0003_default_schedules")
    fleet = PeriodicTask.objects.get(task=tasks.FLEET_INVENTORY_TASK)
    fleet.enabled = False
    fleet.save()

    migration.add_schedules(django_apps, None)

    assert PeriodicTask.objects.filter(task__in=SCHEDULED).count() == len(SCHEDULED)
    assert PeriodicTask.objects.get(task=tasks.FLEET_INVENTORY_TASK).enabled is False


def test_expire_task_expires_due_proposals(make_host, operator):
    host = make_host("per-1")
    request = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="r", user=operator
    )
    PruneRequest.objects.filter(id=request.id).update(expires_at=timezone.now() - timedelta(minutes=1))

    assert tasks.expire_stale.apply().get() == 1
    request.refresh_from_db()
    assert request.state == PruneRequest.State.EXPIRED


def test_resend_task_gives_up_on_exhausted_orders(make_host, operator, settings):
    host = make_host("per-1")
    request = workflow.propose(
        host=host, files=list(host.current_snapshot.files.all()), reason="r", user=operator
    )
    PruneRequest.objects.filter(id=request.id).update(
        state=PruneRequest.State.DISPATCHED,
        dispatched_at=timezone.now() - timedelta(hours=2),
        dispatch_attempts=settings.OCRDASH["MAX_DISPATCH_ATTEMPTS"],
    )
    assert tasks.resend_unanswered.apply().get() == [0, 1]
    request.refresh_from_db()
    assert request.state == PruneRequest.State.FAILED


def test_fleet_inventory_asks_every_active_host_only(make_host, host_queue):
    make_host("per-active-1")
    make_host("per-active-2")
    make_host("per-pending", status=Host.Status.PENDING)
    make_host("per-retired", status=Host.Status.RETIRED)
    queues = {
        name: host_queue(name) for name in ("per-active-1", "per-active-2", "per-pending", "per-retired")
    }

    assert tasks.fleet_inventory.apply().get() == {"asked": 2, "failed": 0}

    got = {name: [task for task, _ in q.drain()] for name, q in queues.items()}
    assert got == {
        "per-active-1": ["ocrdash.agent.inventory"],
        "per-active-2": ["ocrdash.agent.inventory"],
        "per-pending": [],
        "per-retired": [],
    }
    asked = AuditEvent.objects.filter(action=AuditEvent.Action.INVENTORY_ASKED)
    assert sorted(asked.values_list("host", "actor")) == [
        ("per-active-1", "system"),
        ("per-active-2", "system"),
    ]
