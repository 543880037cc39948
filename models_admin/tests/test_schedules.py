"""Scheduled inventories and retention: set on the settings page by approvers only, stored
as django-celery-beat rows, audited, and run by real tasks."""

from __future__ import annotations

import base64
import json

import pytest
import redis
from django.conf import settings
from django.urls import reverse
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from models_admin import schedules, tasks
from models_admin.fleet import trust
from models_admin.inventory.compaction import Retention
from models_admin.models import AuditEvent, Snapshot
from workers.schema import AgentTask, InventoryOrder, host_queue
from workers.signing.envelope import DASHBOARD_SIGNER, verify

from .history_factories import at, host, snapshot

pytestmark = pytest.mark.django_db

PAGE = reverse("ocrdash-settings")
FLEET = reverse("ocrdash-settings-fleet")
HOST = reverse("ocrdash-settings-host")
RETENTION = reverse("ocrdash-settings-retention")
CHANGED = AuditEvent.Action.SETTINGS_CHANGED


def _beat_rows() -> list[tuple]:
    return list(PeriodicTask.objects.order_by("id").values_list("task", "enabled", "interval_id", "kwargs"))


def test_viewers_see_the_settings_without_forms(client_for, viewer):
    response = client_for(viewer).get(PAGE)

    assert response.status_code == 200
    html = response.content.decode()
    assert "only an approver can change them" in html
    assert f'action="{FLEET}"' not in html


def test_an_approver_sets_the_fleet_interval(client_for, approver):
    response = client_for(approver).post(FLEET, {"minutes": "120"})

    assert response.status_code == 302 and response.url == PAGE
    task = PeriodicTask.objects.get(task=tasks.FLEET_INVENTORY_TASK)
    assert (task.enabled, task.interval.every, task.interval.period) == (True, 120, IntervalSchedule.MINUTES)
    event = AuditEvent.objects.get(action=CHANGED)
    assert (event.actor, event.details) == (
        "alice",
        {"setting": "fleet_inventory_minutes", "before": 60, "after": 120},  # 0003: hourly
    )
    assert "every 2 hours" in client_for(approver).get(PAGE).content.decode()


def test_an_empty_interval_turns_the_fleet_schedule_off_and_saving_it_again_writes_nothing(
    client_for, approver
):
    client = client_for(approver)
    client.post(FLEET, {"minutes": "90"})

    client.post(FLEET, {"minutes": ""})
    client.post(FLEET, {"minutes": ""})

    assert PeriodicTask.objects.get(task=tasks.FLEET_INVENTORY_TASK).enabled is False
    assert [e.details["after"] for e in AuditEvent.objects.filter(action=CHANGED).order_by("at", "id")] == [
        90,
        None,
    ]


def test_it_edits_the_fleet_task_whatever_its_name_and_period(client_for, approver):
    every_day = IntervalSchedule.objects.create(every=1, period=IntervalSchedule.DAYS)
    PeriodicTask.objects.filter(task=tasks.FLEET_INVENTORY_TASK).update(
        name="made by a migration", interval=every_day
    )

    client_for(approver).post(FLEET, {"minutes": "30"})

    (task,) = PeriodicTask.objects.filter(task=tasks.FLEET_INVENTORY_TASK)
    assert task.name == "made by a migration" and task.interval.every == 30
    assert AuditEvent.objects.get(action=CHANGED).details["before"] == 24 * 60


def test_an_approver_gives_a_host_its_own_schedule_and_removes_it(client_for, approver):
    host("ocr-a")
    client = client_for(approver)

    client.post(HOST, {"host": "ocr-a", "minutes": "15"})
    task = PeriodicTask.objects.get(task=tasks.HOST_INVENTORY_TASK)
    assert json.loads(task.kwargs) == {"host": "ocr-a"} and task.interval.every == 15
    assert schedules.overview().hosts == [("ocr-a", 15)]

    client.post(HOST, {"host": "ocr-a"})
    assert not PeriodicTask.objects.filter(task=tasks.HOST_INVENTORY_TASK).exists()
    events = AuditEvent.objects.filter(action=CHANGED).order_by("at", "id")
    assert [(e.host, e.details["before"], e.details["after"]) for e in events] == [
        ("ocr-a", None, 15),
        ("ocr-a", 15, None),
    ]


def test_compaction_is_scheduled_daily_with_the_default_retention_from_the_start():
    task = PeriodicTask.objects.get(task=tasks.COMPACT_TASK)

    assert task.enabled and task.interval.every == 24 * 60
    assert schedules.overview().retention == Retention()
    assert schedules.overview().compaction_enabled


def test_an_approver_sets_the_retention(client_for, approver):
    client_for(approver).post(
        RETENTION,
        {"daily_after_days": "14", "weekly_after_days": "120", "received_reports_days": "7", "enabled": "1"},
    )

    task = PeriodicTask.objects.get(task=tasks.COMPACT_TASK)
    assert json.loads(task.kwargs) == {
        "daily_after_days": 14,
        "weekly_after_days": 120,
        "received_reports_days": 7,
    }
    assert task.enabled and task.interval.every == 24 * 60
    assert schedules.overview().retention == Retention(14, 120, 7)
    assert AuditEvent.objects.get(action=CHANGED).details["after"] == {
        "daily_after_days": 14,
        "weekly_after_days": 120,
        "received_reports_days": 7,
        "enabled": True,
    }


@pytest.mark.parametrize(
    ("url", "data"),
    [
        (FLEET, {"minutes": "1"}),  # below the minimum
        (RETENTION, {"daily_after_days": "90", "weekly_after_days": "30", "enabled": "1"}),
        (RETENTION, {"daily_after_days": "", "weekly_after_days": "30"}),
    ],
)
def test_nonsense_is_refused_with_a_message_and_changes_nothing(client_for, approver, url, data):
    before = _beat_rows()
    response = client_for(approver).post(url, data, follow=True)

    assert response.redirect_chain[-1][0] == PAGE
    assert any(m.level_tag == "error" for m in response.context["messages"])
    assert _beat_rows() == before
    assert not AuditEvent.objects.filter(action=CHANGED).exists()


@pytest.mark.parametrize("url", [FLEET, HOST, RETENTION])
def test_only_approvers_change_settings(client, client_for, viewer, operator, url):
    host("ocr-a")
    data = {"minutes": "30", "host": "ocr-a", "daily_after_days": "10", "weekly_after_days": "20"}
    before = _beat_rows()

    assert client_for(viewer).post(url, data).status_code == 403
    assert client_for(operator).post(url, data).status_code == 403
    assert client.post(url, data).status_code == 302  # to the login page
    assert _beat_rows() == before
    assert not AuditEvent.objects.filter(action=CHANGED).exists()


@pytest.mark.parametrize("url", [FLEET, HOST, RETENTION])
def test_setting_views_refuse_get(client_for, approver, url):
    assert client_for(approver).get(url).status_code == 405


@pytest.fixture
def broker():
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    client.delete(host_queue("ocr-a"))
    yield client
    client.delete(host_queue("ocr-a"))


def test_the_host_task_sends_an_inventory_order_to_that_host(broker):
    host("ocr-a")

    assert tasks.host_inventory("ocr-a") == "asked"

    (message,) = broker.lrange(host_queue("ocr-a"), 0, -1)
    body = json.loads(message)
    signed = json.loads(_decoded_body(body))[0][0]
    verified = verify(
        signed,
        trust.dashboard_key().public_key(),
        expected_signer=DASHBOARD_SIGNER,
        expected_purpose=AgentTask.INVENTORY,
    )
    order = InventoryOrder.model_validate(verified.body)
    assert order.host == "ocr-a"
    assert AuditEvent.objects.get(action=AuditEvent.Action.INVENTORY_ASKED).actor == "system"


def _decoded_body(message: dict) -> str:
    """kombu's Redis transport stores the task's body base64-encoded inside its envelope."""
    return base64.b64decode(message["body"]).decode()


def test_the_host_task_skips_retired_and_unknown_hosts_quietly(broker):
    host("ocr-a", status="retired")

    assert tasks.host_inventory("ocr-a") == "skipped"
    assert tasks.host_inventory("gone") == "skipped"
    assert broker.llen(host_queue("ocr-a")) == 0


def test_the_compaction_task_runs_with_the_stored_retention():
    a = host("ocr-a")
    for hour in (6, 12, 18):
        snapshot(a, at(f"2020-01-01 {hour:02d}:00"), {"x": hour})
    snapshot(a, at("2020-01-10 06:00"), {"x": 1})
    schedules.set_retention(Retention(10, 20), True, None)
    kwargs = json.loads(PeriodicTask.objects.get(task=tasks.COMPACT_TASK).kwargs)

    totals = tasks.compact_snapshots(**kwargs)

    assert totals["snapshots_deleted"] == 2
    assert Snapshot.objects.count() == 2
    event = AuditEvent.objects.get(action=AuditEvent.Action.SNAPSHOTS_COMPACTED)
    assert (event.details["daily_after_days"], event.details["weekly_after_days"]) == (10, 20)
