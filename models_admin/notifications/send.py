"""``notify``: tell people of an event, without ever holding up the change that caused it.

Called inside the transaction that made the change (a workflow transition, an ingest), it only
registers an ``on_commit`` hook: a rolled-back change tells nobody, and nothing slow runs while
row locks are held. After commit the hook writes one Notification row per recipient (each user
who did not turn the event off, each webhook the admins routed it to) and enqueues one
delivery task per row on the notify queue, failing fast when the broker is gone: the row then
stays pending and the sweep (``delivery.sweep``) enqueues it again. A failing channel or
broker costs the workflow one quick INSERT and nothing else.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Count, Sum
from django.template.defaultfilters import filesizeformat
from django.urls import reverse

from ocrdash.celery import NOTIFY_QUEUE, app

from ..models import Campaign, Notification, NotificationPreference, NotificationProfile
from ..security import roles
from . import routing
from .events import Event

log = logging.getLogger(__name__)

DELIVER_TASK = "ocrdash.notify.deliver"
SWEEP_TASK = "ocrdash.notify.sweep"


@dataclass(frozen=True)
class Message:
    event: Event
    subject: str
    path: str  # the page it is about, e.g. reverse("ocrdash-request", ...)
    host: str = ""
    lines: Sequence[str] = field(default_factory=tuple)
    campaign_id: uuid.UUID | None = None  # the campaign it is about: webhooks route by its target

    @property
    def url(self) -> str:
        return absolute_url(self.path)

    def body(self) -> str:
        text = [self.subject, "", *self.lines]
        text += ["", f"Open: {self.url}", "", "Change what you are told of: " + absolute_url(_prefs_path())]
        return "\n".join(text).replace("\n\n\n", "\n\n")


def absolute_url(path: str) -> str:
    """``OCRDASH_BASE_URL`` + path: messages are read outside the dashboard, so links are absolute."""
    return settings.OCRDASH["BASE_URL"].rstrip("/") + path


def _prefs_path() -> str:
    return reverse("ocrdash-notification-preferences")


def notify(
    event: Event,
    subject: str,
    *,
    path: str,
    host: str = "",
    lines: Sequence[str] = (),
    users: Iterable[object] = (),
    role: roles.Action | None = None,
    exclude: Iterable[object] = (),
    campaign: Campaign | None = None,
) -> None:
    """Tell ``users`` (ids or users; None is skipped) and everyone whom ``role`` allows, except
    ``exclude``, of ``event``; and the webhooks routed for it (``routing``: by ``host``'s labels
    and groups, or by ``campaign``'s target). Returns at once."""
    message = Message(event, subject[:255], path, host, tuple(lines), campaign.pk if campaign else None)
    user_ids = {pk for u in users if (pk := _pk(u)) is not None}
    excluded = {pk for u in exclude if (pk := _pk(u)) is not None}
    transaction.on_commit(lambda: _after_commit(message, user_ids, role, excluded), robust=True)


def _pk(user: object) -> int | None:
    if user is None or isinstance(user, int):
        return user
    return getattr(user, "pk", None)


def recipients(event: Event, user_ids: set[int], role: roles.Action | None, excluded: set[int]):
    """Active users with an address who did not turn ``event`` off: the one rule for who hears."""
    users = get_user_model().objects.filter(is_active=True).exclude(email="")
    chosen = [u for u in users if u.pk in user_ids or (role is not None and roles.can(u, role))]
    off = set(
        NotificationPreference.objects.filter(
            event=event.value, channel=NotificationPreference.Channel.NONE
        ).values_list("user_id", flat=True)
    )
    return [u for u in chosen if u.pk not in excluded and u.pk not in off]


def _after_commit(
    message: Message, user_ids: set[int], role: roles.Action | None, excluded: set[int]
) -> None:
    rows = []
    digesting = set(
        NotificationProfile.objects.filter(digest_minutes__gt=0).values_list("user_id", flat=True)
    )
    common = {
        "event": message.event.value,
        "subject": message.subject,
        "body": message.body(),
        "url": message.url,
        "host": message.host[:128],
    }
    for user in recipients(message.event, user_ids, role, excluded):
        status = Notification.Status.DIGEST if user.pk in digesting else Notification.Status.PENDING
        rows.append(
            Notification(
                kind=Notification.Kind.EMAIL, user=user, recipient=user.email, status=status, **common
            )
        )
    for hook in routing.webhooks_for(message.event.value, _about(message)):
        rows.append(
            Notification(kind=Notification.Kind.WEBHOOK, webhook=hook, recipient=hook.masked_url, **common)
        )
    if not rows:
        return
    Notification.objects.bulk_create(rows)
    for row in rows:
        if row.status == Notification.Status.PENDING:
            enqueue(row.id)


def _about(message: Message) -> routing.About:
    if message.campaign_id is not None:
        campaign = Campaign.objects.select_related("target_group").filter(pk=message.campaign_id).first()
        if campaign is not None:
            return routing.About.campaign(campaign)
    return routing.About.host(message.host)


def enqueue(notification_id) -> bool:
    """Put one delivery on the notify queue; False (logged) when the broker did not take it."""
    try:
        with app.connection_for_write() as connection:
            # No connect retries: a web request must not wait for a broker that is gone; the
            # sweep enqueues pending rows again.
            connection.ensure_connection(max_retries=0)
            app.send_task(
                DELIVER_TASK,
                args=[str(notification_id)],
                queue=NOTIFY_QUEUE,
                connection=connection,
                retry=False,
            )
    except Exception as exc:  # kombu raises many types
        log.warning("notification %s not enqueued (the sweep will): %s", notification_id, exc)
        return False
    return True


def notify_request(
    event: Event,
    request,
    *,
    users: Iterable[object] = (),
    role: roles.Action | None = None,
    exclude: Iterable[object] = (),
) -> None:
    """``notify`` about a PruneRequest: the subject and lines every request message shares."""
    what = f"{request.get_kind_display()} request {request.short_id} on {request.host.name}"
    totals = request.items.aggregate(files=Count("id"), size=Sum("size"))
    lines = [
        f"Requested by {request.requested_by_name}: {request.reason}",
        f"{totals['files']} file(s), {filesizeformat(totals['size'] or 0)}",
    ]
    if request.bytes_freed:
        lines.append(f"Freed on disk: {filesizeformat(request.bytes_freed)}")
    if request.bytes_in_quarantine:
        lines.append(
            f"In quarantine (still on the disk, restorable): {filesizeformat(request.bytes_in_quarantine)}"
        )
    if request.decided_by_id is not None and event != Event.REQUEST_WAITING:
        comment = f": {request.decision_comment}" if request.decision_comment else ""
        lines.append(f"Decided by {request.decided_by.get_username()}{comment}")
    if request.finished_at is not None and request.state not in (
        request.State.REJECTED,
        request.State.EXPIRED,
    ):
        lines.append(f"State: {request.get_state_display()}")
    subjects = {
        Event.REQUEST_WAITING: f"{what} waits for your approval",
        Event.REQUEST_APPROVED: f"{what} was approved",
        Event.REQUEST_REJECTED: f"{what} was rejected",
        Event.REQUEST_FINISHED: f"{what} finished: {request.get_state_display().lower()}",
        Event.REQUEST_PROBLEM: f"{what} finished: {request.get_state_display().lower()}",
    }
    notify(
        event,
        subjects.get(event, f"{what}: {event.label}"),
        path=reverse("ocrdash-request", args=[request.id]),
        host=request.host.name,
        lines=lines,
        users=users,
        role=role,
        exclude=exclude,
    )


def notify_campaign(
    event: Event,
    campaign: Campaign,
    *,
    users: Iterable[object] = (),
    role: roles.Action | None = None,
    exclude: Iterable[object] = (),
) -> None:
    """``notify`` about a Campaign; webhooks route it by the campaign's target group or selector."""
    what = f"Campaign {campaign.short_id} on {campaign.target_label or 'its hosts'}"
    lines = [f"Proposed by {campaign.requested_by_name}: {campaign.reason}"]
    if campaign.decided_by is not None and event != Event.CAMPAIGN_WAITING:
        comment = f": {campaign.decision_comment}" if campaign.decision_comment else ""
        lines.append(f"Decided by {campaign.decided_by.get_username()}{comment}")
    if campaign.halt_reason:
        lines.append(f"Why it halted: {campaign.halt_reason}")
    subjects = {
        Event.CAMPAIGN_WAITING: f"{what} waits for your approval",
        Event.CAMPAIGN_APPROVED: f"{what} was approved",
        Event.CAMPAIGN_REJECTED: f"{what} was rejected",
        Event.CAMPAIGN_HALTED: f"{what} halted",
        Event.CAMPAIGN_FINISHED: f"{what} finished: {campaign.get_state_display().lower()}",
    }
    notify(
        event,
        subjects.get(event, f"{what}: {event.label}"),
        path=reverse("ocrdash-campaign", args=[campaign.id]),
        lines=lines,
        users=users,
        role=role,
        exclude=exclude,
        campaign=campaign,
    )
