"""Capacity alerts: a forecast under N days and a passed watermark, told once per crossing.

Raised by real inventories through ``ingest`` (what the ingest worker runs), delivered by
``delivery.deliver`` (what the notify worker runs) to a real SMTP server (aiosmtpd) and a real
HTTP webhook receiver routed per group and per labels.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from kombu import Connection

from models_admin.capacity import scheduled, watermarks
from models_admin.fleet import labels
from models_admin.models import DiskSample, Host, Notification, NotificationPreference, WebhookRoute
from models_admin.notifications import Event, delivery
from models_admin.notifications import webhooks as hooks_admin
from ocrdash.celery import NOTIFY_QUEUE

from .conftest import disk_history, disk_inventory, ingest
from .receivers import SMTPServer, WebhookReceiver, body_of

pytestmark = pytest.mark.django_db
GB = 1_000_000_000
TOTAL = 1_000 * GB
Scope = WebhookRoute.Scope


@pytest.fixture
def smtp(settings):
    with Connection(settings.CELERY_BROKER_URL) as conn:
        queue = conn.SimpleQueue(NOTIFY_QUEUE)
        queue.clear()
        with SMTPServer() as sink:
            settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
            settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
            settings.OCRDASH = {**settings.OCRDASH, "BASE_URL": "https://ocrdash.example.com"}
            yield sink
        queue.clear()
        queue.close()


@pytest.fixture
def receiver():
    with WebhookReceiver() as server:
        yield server


def inventory(name: str, free: int, capture) -> list[str]:
    """One inventory saying ``free``; returns the statuses of the deliveries it caused."""
    with capture(execute=True):
        ingest(disk_inventory(name, free))
    return [
        delivery.deliver(n.id)[0] for n in Notification.objects.filter(status=Notification.Status.PENDING)
    ]


def subjects(sink, address: str) -> list[str]:
    return [m["Subject"] for m in sink.to(address)]


def test_a_forecast_under_the_alert_days_is_told_once_per_crossing(
    smtp, receiver, make_host, approver, operator, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    host = make_host("ocr-fill", {})
    labels.set_labels(host, {"env": "prod"}, approver)
    hooks_admin.add_route(
        hooks_admin.add_webhook("prod", receiver.url("/prod"), user=approver),
        Event.FORECAST_SHORT,
        Scope.LABELS,
        user=approver,
        selector={"env": "prod"},
    )
    assert settings.OCRDASH["FORECAST_ALERT_DAYS"] == 14
    free = disk_history(host, 20 * GB)  # 240 GB left at 20 GB a day: 12 days
    assert inventory("ocr-fill", free, capture) == [Notification.Status.SENT] * 2
    [mail] = smtp.to(approver.email)
    assert mail["Subject"] == "ocr-fill: disk full in about 12 days"
    body = body_of(mail)
    assert "alert under 14 days" in body and "https://ocrdash.example.com/hosts/ocr-fill/" in body
    assert smtp.to(operator.email) == []  # told to whoever may manage hosts
    assert [b["title"] for _, b in receiver.posts] == ["ocr-fill: disk full in about 12 days"]

    # The next reports, still short: nothing more.
    assert inventory("ocr-fill", free - 1 * GB, capture) == []
    assert Host.objects.get(pk=host.pk).forecast_alerted

    # The disk is cleaned up: the series stops falling, the flag clears, and a new fall is told again.
    DiskSample.objects.filter(host=host).update(disk_free=700 * GB)
    assert inventory("ocr-fill", 700 * GB, capture) == []
    assert not Host.objects.get(pk=host.pk).forecast_alerted
    DiskSample.objects.filter(host=host).delete()
    assert (
        inventory("ocr-fill", disk_history(host, 40 * GB, start=900 * GB), capture)
        == [Notification.Status.SENT] * 2
    )
    assert len(smtp.to(approver.email)) == 2


def test_the_watermark_is_told_on_passing_the_high_mark_and_again_only_after_the_low(
    smtp, make_host, approver, approver2, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    make_host("ocr-wm", {})
    NotificationPreference.objects.create(
        user=approver2, event=Event.WATERMARK_PASSED.value, channel=NotificationPreference.Channel.NONE
    )
    used = lambda pct: TOTAL - pct * TOTAL // 100  # noqa: E731  free bytes at pct % used
    assert inventory("ocr-wm", used(80), capture) == []  # under the default high mark of 85 %
    assert inventory("ocr-wm", used(90), capture) == [Notification.Status.SENT]
    assert subjects(smtp, approver.email) == ["ocr-wm: disk 90 % used, over its high mark of 85 %"]
    assert "The watermark of the default: high 85 %, low 80 %." in body_of(smtp.to(approver.email)[0])
    assert smtp.to(approver2.email) == []  # turned this event off
    assert inventory("ocr-wm", used(92), capture) == []  # still over: told already
    assert inventory("ocr-wm", used(83), capture) == []  # under high, above low: not rearmed
    assert inventory("ocr-wm", used(88), capture) == []
    assert inventory("ocr-wm", used(79), capture) == []  # under the low mark: rearmed
    assert inventory("ocr-wm", used(86), capture) == [Notification.Status.SENT]
    assert len(smtp.to(approver.email)) == 2


def test_the_watermark_that_applies_is_the_hosts_schedule_then_its_groups_then_the_default(
    smtp, receiver, make_host, approver, django_capture_on_commit_callbacks
):
    capture = django_capture_on_commit_callbacks
    east, west = make_host("ocr-east", {}), make_host("ocr-west", {})
    labels.set_labels(east, {"region": "east"}, approver)
    labels.set_labels(west, {"region": "west"}, approver)
    group = labels.save_group("east", user=approver, selector={"region": "east"})
    labels.save_group("west", user=approver, selector={"region": "west"})
    channel = hooks_admin.add_webhook("east-team", receiver.url("/east"), user=approver)
    hooks_admin.add_route(
        channel,
        Event.WATERMARK_PASSED,
        Scope.GROUP,
        user=approver,
        group=labels.HostGroup.objects.get(name="east"),
    )
    scheduled.set_group_marks(group, 70, 60, approver)
    assert watermarks.marks_for(east) == watermarks.Marks(70, 60, "group east")
    assert watermarks.marks_for(west).source == "the default"

    assert inventory("ocr-east", TOTAL * 25 // 100, capture) == [Notification.Status.SENT] * 2  # 75 % used
    assert inventory("ocr-west", TOTAL * 25 // 100, capture) == []  # 75 % is under the default 85 %
    assert [b["title"] for _, b in receiver.posts] == ["ocr-east: disk 75 % used, over its high mark of 70 %"]

    # The host's own watermark schedule takes precedence over its group's marks.
    scheduled.set_schedule("watermark", 60, approver, host=west, params={"high": 50, "low": 40})
    assert watermarks.marks_for(west) == watermarks.Marks(50, 40, "its watermark schedule")
    assert inventory("ocr-west", TOTAL * 30 // 100, capture) == [Notification.Status.SENT]
    assert "ocr-west: disk 70 % used, over its high mark of 50 %" in subjects(smtp, approver.email)


def test_the_watermark_is_one_statement_and_agrees_with_group_membership(
    make_host, approver, django_assert_num_queries
):
    host = make_host("ocr-1", {})
    other = make_host("ocr-2", {})
    labels.set_labels(host, {"env": "prod", "region": "eu"}, approver)
    labels.set_labels(other, {"env": "prod", "region": "us"}, approver)
    groups = [
        ("eu-prod", {"env": "prod", "region": "eu"}, [], 72),  # matches ocr-1
        ("us", {"region": "us"}, [], 50),  # does not
        ("listed", {}, ["ocr-1"], 71),  # lists ocr-1
        ("others", {}, ["ocr-2"], 40),  # does not
        ("no-marks", {"env": "prod"}, [], None),
    ]
    for name, selector, members, high in groups:
        group = labels.save_group(name, user=approver, selector=selector, hosts=members)
        if high is not None:
            scheduled.set_group_marks(group, high, high - 10, approver)
    host = Host.objects.get(pk=host.pk)
    with django_assert_num_queries(1):
        applies = watermarks.marks_for(host)
    assert applies == watermarks.Marks(71, 61, "group listed")
    # The same groups as the SQL rule says (labels.group_hosts), for both hosts.
    for h in (host, Host.objects.get(pk=other.pk)):
        member_of = [
            g
            for g in labels.HostGroup.objects.exclude(watermark_high=None)
            if labels.group_hosts(g, Host.objects.filter(pk=h.pk)).exists()
        ]
        expected = min((watermarks.group_marks(g) for g in member_of), key=lambda m: m.high)
        assert watermarks.marks_for(h) == expected
    # The host's own schedule still comes first, in the same one statement.
    scheduled.set_schedule("watermark", 60, approver, host=host, params={"high": 90, "low": 70})
    with django_assert_num_queries(1):
        assert watermarks.marks_for(host) == watermarks.Marks(90, 70, "its watermark schedule")
