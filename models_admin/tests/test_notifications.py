"""Notifications end to end in one process: real SMTP (aiosmtpd) and real HTTP webhook receivers.

Rows are written after commit (``django_capture_on_commit_callbacks``), then delivered by
``delivery.deliver``, the function the Celery task runs; the broker the rows are enqueued on
is the real Redis, emptied around each test.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from kombu import Connection

from models_admin.approvals import workflow
from models_admin.models import (
    AuditEvent,
    Host,
    Notification,
    NotificationPreference,
    NotificationProfile,
    WebhookChannel,
)
from models_admin.notifications import Event, delivery
from ocrdash.celery import NOTIFY_QUEUE

from .receivers import SMTPServer, WebhookReceiver, body_of, free_port

Status = Notification.Status


@pytest.fixture
def notify_queue():
    with Connection(settings.CELERY_BROKER_URL) as conn:
        queue = conn.SimpleQueue(NOTIFY_QUEUE)
        queue.clear()
        yield queue
        queue.clear()
        queue.close()


@pytest.fixture
def smtp(settings, notify_queue):
    with SMTPServer() as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", sink.port
        settings.OCRDASH = {**settings.OCRDASH, "BASE_URL": "https://ocrdash.example.com"}
        yield sink


def deliver_all() -> list[str]:
    """Run every pending delivery, as the notify worker would."""
    return [delivery.deliver(n.id)[0] for n in Notification.objects.filter(status=Status.PENDING)]


@pytest.fixture
def propose(operator, django_capture_on_commit_callbacks):
    def make(host, user=None):
        with django_capture_on_commit_callbacks(execute=True):
            return workflow.propose(
                host=host,
                files=list(host.current_snapshot.files.all()),
                reason="stale",
                user=user or operator,
            )

    return make


def test_every_approver_is_told_a_request_waits_but_never_its_proposer(
    smtp, make_host, propose, approver, approver2
):
    host = make_host("ocr-1")
    request = propose(host, user=approver2)  # bob proposes; bob may approve, but not his own
    assert deliver_all() == [Status.SENT]
    [mail] = smtp.to(approver.email)
    assert smtp.to(approver2.email) == []
    assert f"request {request.short_id} on ocr-1 waits for your approval" in mail["Subject"]
    body = body_of(mail)
    assert f"https://ocrdash.example.com/requests/{request.id}/" in body
    assert "2 file(s)" in body and "Requested by bob: stale" in body


def test_the_proposer_is_told_of_the_approval_and_the_finish(
    smtp, make_host, propose, operator, approver, host_queue, django_capture_on_commit_callbacks
):
    host = make_host("ocr-1")
    request = propose(host)
    queue = host_queue(host.name)
    with django_capture_on_commit_callbacks(execute=True):
        workflow.approve(request.id, approver, comment="fine")
    queue.drain()
    from workers.schema import ItemOutcome, Outcome

    outcomes = [
        ItemOutcome(path=i.path, outcome=Outcome.QUARANTINED, bytes_reclaimed=i.size)
        for i in request.items.all()
    ]
    with django_capture_on_commit_callbacks(execute=True):
        workflow.record_outcomes(request.id, outcomes)
    deliver_all()
    subjects = [m["Subject"] for m in smtp.to(operator.email)]
    assert any("was approved" in s for s in subjects), subjects
    assert any("finished: completed" in s for s in subjects), subjects
    assert smtp.to(approver.email) and all("waits" in m["Subject"] for m in smtp.to(approver.email))


def test_preferences_are_kept_per_user_and_per_event(
    smtp, make_host, propose, approver, approver2, operator, django_capture_on_commit_callbacks
):
    NotificationPreference.objects.create(user=approver, event=Event.REQUEST_WAITING, channel="none")
    host = make_host("ocr-1")
    request = propose(host)
    deliver_all()
    assert smtp.to(approver.email) == []  # alice turned this event off
    assert len(smtp.to(approver2.email)) == 1  # bob did not
    # alice's choice is about that one event: she still hears that her own request was approved.
    NotificationPreference.objects.create(user=operator, event=Event.REQUEST_REJECTED, channel="none")
    with django_capture_on_commit_callbacks(execute=True):
        workflow.reject(request.id, approver2)
    deliver_all()
    assert smtp.to(operator.email) == []
    other = make_host("ocr-2")
    mine = propose(other, user=approver)
    with django_capture_on_commit_callbacks(execute=True):
        workflow.reject(mine.id, approver2, comment="no")
    deliver_all()
    assert [m["Subject"] for m in smtp.to(approver.email)] == [
        f"Prune request {mine.short_id} on ocr-2 was rejected"
    ]


def test_a_failing_webhook_stops_neither_the_email_nor_the_workflow(smtp, make_host, propose, approver):
    with WebhookReceiver(status=500) as broken, WebhookReceiver() as working:
        for name, url, event in [
            ("broken", broken.url(), Event.REQUEST_WAITING),
            ("chat", working.url("/chat/s3cr3t-token"), Event.REQUEST_WAITING),
            ("other", working.url("/other"), Event.HOST_MISSING),
        ]:
            WebhookChannel.objects.create(name=name, url=url).routes.create(event=event)
        host = make_host("ocr-1")
        request = propose(host)  # returns although one webhook is broken
        assert request.state == "proposed"
        statuses = sorted(deliver_all())
        assert len(smtp.to(approver.email)) == 1
        [(path, body)] = working.posts
        assert path == "/chat/s3cr3t-token" and "waits for your approval" in body["title"]
        assert len(broken.posts) == 1
    assert statuses.count(Status.SENT) == 2  # the approver and the working webhook
    failed = Notification.objects.get(webhook__name="broken")
    assert failed.status == Status.RETRYING and failed.error
    assert "s3cr3t-token" not in Notification.objects.get(webhook__name="chat").recipient


def test_delivery_retries_with_the_reason_and_gives_up_after_the_last_attempt(
    settings, smtp, make_host, propose, approver, notify_queue
):
    settings.EMAIL_PORT = free_port()  # nothing listens there
    settings.OCRDASH = {**settings.OCRDASH, "NOTIFY_MAX_ATTEMPTS": 2}
    propose(make_host("ocr-1"))
    row = Notification.objects.get(user=approver)
    status, retry_in = delivery.deliver(row.id)
    row.refresh_from_db()
    assert (status, retry_in) == (Status.RETRYING, 30)
    assert "could not reach the mail server 127.0.0.1" in row.error
    assert delivery.requeue_due(timezone.now()) == 0  # its own retry comes first
    # The retry was lost (the broker was away): once due, the sweep hands it out again.
    assert delivery.requeue_due(row.next_attempt_at) == 1
    assert notify_queue.get(timeout=5).payload
    assert delivery.deliver(row.id) == (Status.FAILED, None)
    row.refresh_from_db()
    assert row.status == Status.FAILED and "gave up after 2 attempts" in row.error


def test_digest_mode_sends_at_most_one_email_per_period_listing_what_happened(
    smtp, make_host, propose, approver
):
    NotificationProfile.objects.create(user=approver, digest_minutes=60)
    propose(make_host("ocr-1"))
    propose(make_host("ocr-2"))
    assert set(Notification.objects.filter(user=approver).values_list("status", flat=True)) == {Status.DIGEST}
    now = timezone.now()
    assert delivery.send_digests(now) == 1
    deliver_all()
    [digest] = smtp.to(approver.email)
    body = body_of(digest)
    assert "2 things happened" in digest["Subject"]
    assert "ocr-1 waits" in body and "ocr-2 waits" in body
    propose(make_host("ocr-3"))
    assert delivery.send_digests(now + timedelta(minutes=30)) == 0  # within the hour: waits
    assert delivery.send_digests(now + timedelta(minutes=61)) == 1
    deliver_all()
    assert len(smtp.to(approver.email)) == 2


def test_a_host_going_offline_or_missing_is_told_once_per_change(
    smtp, make_host, approver, django_capture_on_commit_callbacks
):
    host = make_host("ocr-1")
    now = timezone.now()
    assert delivery.check_presence(now) == 0  # first look: recorded, nothing told
    Host.objects.filter(pk=host.pk).update(last_seen=now - timedelta(hours=3))
    with django_capture_on_commit_callbacks(execute=True):
        assert delivery.check_presence(now) == 1
        assert delivery.check_presence(now) == 0
    deliver_all()
    [mail] = smtp.to(approver.email)
    assert mail["Subject"] == "ocr-1 is offline"
    assert "https://ocrdash.example.com/hosts/ocr-1/" in body_of(mail)


def test_the_preferences_page_saves_each_choice_and_audits_it(client_for, approver):
    client = client_for(approver)
    page = client.get("/account/notifications/")
    assert page.status_code == 200
    assert Event.REQUEST_WAITING.label in page.content.decode()
    data = {e.value: "email" for e in Event} | {Event.HOST_OFFLINE.value: "none", "digest_minutes": "15"}
    response = client.post("/account/notifications/", data)
    assert response.status_code == 302
    assert NotificationPreference.objects.get(user=approver, event=Event.HOST_OFFLINE).channel == "none"
    assert NotificationProfile.objects.get(user=approver).digest_minutes == 15
    assert AuditEvent.objects.filter(
        action=AuditEvent.Action.SETTINGS_CHANGED, actor=approver.username
    ).exists()
    bad = client.post("/account/notifications/", data | {"digest_minutes": "7"})
    assert bad.status_code == 200 and NotificationProfile.objects.get(user=approver).digest_minutes == 15


def test_the_admin_never_shows_a_webhook_url_in_full(admin_client):
    WebhookChannel.objects.create(name="slack", url="json://127.0.0.1:9/hooks/very-secret-token")
    listing = admin_client.get("/admin/models_admin/webhookchannel/").content.decode()
    hook = WebhookChannel.objects.get()
    change = admin_client.get(f"/admin/models_admin/webhookchannel/{hook.pk}/change/").content.decode()
    assert "very-secret-token" not in listing and "very-secret-token" not in change
    assert "json://127.0.0.1:9/h…s/v…n" in listing
    # Saving without retyping the URL keeps it.
    response = admin_client.post(
        f"/admin/models_admin/webhookchannel/{hook.pk}/change/",
        {
            "name": "slack",
            "url": "",
            "enabled": "on",
            "routes-TOTAL_FORMS": "0",
            "routes-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert hook.url.endswith("very-secret-token")
