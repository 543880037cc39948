"""The Celery side of notifications: deliver one row (with retries), digests, and the sweep.

Delivery claims its row with a conditional UPDATE (pending/retrying → sending), so a task
delivered twice (late acks, the sweep re-enqueuing a row whose first task is merely slow)
sends once. A claimed row carries a lease in ``next_attempt_at``: a worker that died while
sending leaves a row the sweep hands out again once the lease ran out.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import Host, Notification, NotificationProfile, PresenceAlert
from ..security import roles
from . import channels
from .events import DIGEST, Event
from .send import absolute_url, enqueue, notify

log = logging.getLogger(__name__)
Status = Notification.Status

LEASE = timedelta(minutes=10)
# A pending row whose task never came (the broker was away) is enqueued again after this.
ENQUEUE_GRACE = timedelta(minutes=1)


def backoff(attempt: int) -> int:
    """Seconds before attempt ``attempt + 1``: 30 s, 1, 2, 4 ... minutes, at most an hour."""
    return min(30 * 2 ** (attempt - 1), 3600)


def deliver(notification_id) -> tuple[str, int | None]:
    """Send one notification. Returns (its status, seconds until a retry, or None)."""
    now = timezone.now()
    claimed = Notification.objects.filter(
        id=notification_id, status__in=[Status.PENDING, Status.RETRYING]
    ).update(status=Status.SENDING, attempts=F("attempts") + 1, next_attempt_at=now + LEASE)
    if not claimed:
        return "skipped", None
    row = Notification.objects.select_related("webhook").get(id=notification_id)
    try:
        if row.kind == Notification.Kind.EMAIL:
            channels.send_email(row.recipient, row.subject, row.body)
        else:
            if row.webhook is None:
                raise channels.DeliveryError("the webhook was deleted")
            channels.send_webhook(row.webhook.url, row.subject, row.body)
    except channels.DeliveryError as exc:
        return _failed(row, str(exc))
    except Exception as exc:  # a bug or a library's surprise: recorded like any failure, never lost
        log.exception("notification %s failed", row.id)
        return _failed(row, f"unexpected error: {type(exc).__name__}: {exc}")
    Notification.objects.filter(id=row.id).update(status=Status.SENT, sent_at=timezone.now(), error="")
    return Status.SENT, None


def _failed(row: Notification, reason: str) -> tuple[str, int | None]:
    max_attempts = settings.OCRDASH["NOTIFY_MAX_ATTEMPTS"]
    log.warning("notification %s to %s failed (attempt %d): %s", row.id, row.recipient, row.attempts, reason)
    if row.attempts >= max_attempts:
        Notification.objects.filter(id=row.id).update(
            status=Status.FAILED,
            error=f"{reason} (gave up after {row.attempts} attempts)",
            next_attempt_at=None,
        )
        return Status.FAILED, None
    delay = backoff(row.attempts)
    # The task retries itself after ``delay``; the sweep only steps in if that retry is lost.
    Notification.objects.filter(id=row.id).update(
        status=Status.RETRYING,
        error=reason,
        next_attempt_at=timezone.now() + timedelta(seconds=delay) + ENQUEUE_GRACE,
    )
    return Status.RETRYING, delay


# ---------------------------------------------------------------- the sweep (beat, every minute)


def sweep(now=None) -> dict[str, int]:
    """Enqueue what is due again, send the digests that are due, and tell presence changes."""
    now = now or timezone.now()
    return {"requeued": requeue_due(now), "digests": send_digests(now), "presence": check_presence(now)}


def requeue_due(now) -> int:
    due = Notification.objects.filter(
        Q(status__in=[Status.RETRYING, Status.SENDING], next_attempt_at__lte=now)
        | Q(status=Status.PENDING, created_at__lte=now - ENQUEUE_GRACE)
    ).values_list("id", "status")
    count = 0
    for nid, status in due:
        # A sending row's worker died mid-send (its lease ran out): take it back first.
        reclaimed = status != Status.SENDING or Notification.objects.filter(
            id=nid, status=Status.SENDING, next_attempt_at__lte=now
        ).update(status=Status.RETRYING)
        if not reclaimed:
            continue
        count += enqueue(nid)
    return count


def send_digests(now) -> int:
    """One email per digesting user whose last digest is at least their N minutes old."""
    sent = 0
    waiting = Notification.objects.filter(status=Status.DIGEST).values_list("user_id", flat=True).distinct()
    for user_id in list(waiting):
        with transaction.atomic():
            # Locked: two sweeps racing (beat fired twice) must not both send this user's digest.
            profile = NotificationProfile.objects.select_for_update().filter(user_id=user_id).first()
            minutes = profile.digest_minutes if profile is not None else 0
            if (
                profile is not None
                and profile.last_digest_at
                and now - profile.last_digest_at < timedelta(minutes=minutes)
            ):
                continue
            parts = list(
                Notification.objects.filter(user_id=user_id, status=Status.DIGEST)
                .select_related("user")
                .order_by("created_at")
            )
            if not parts:
                continue
            digest = Notification.objects.create(
                event=DIGEST,
                kind=Notification.Kind.EMAIL,
                user=parts[0].user,
                recipient=parts[-1].recipient,
                subject=f"ocrdash: {len(parts)} thing{'s' if len(parts) != 1 else ''} happened",
                body=_digest_body(parts, minutes),
                url=absolute_url("/"),
            )
            Notification.objects.filter(id__in=[p.id for p in parts]).update(
                status=Status.IN_DIGEST, digest=digest
            )
            if profile is not None:
                profile.last_digest_at = now
                profile.save(update_fields=["last_digest_at"])
            transaction.on_commit(partial(enqueue, digest.id))
            sent += 1
    return sent


def _digest_body(parts: list[Notification], minutes: int) -> str:
    lines = [f"What happened since your last digest (at most one every {minutes} minutes):", ""]
    for part in parts:
        when = timezone.localtime(part.created_at).strftime("%Y-%m-%d %H:%M")
        lines += [f"- {when}  {part.subject}", f"  {part.url}"]
    return "\n".join(lines)


def check_presence(now) -> int:
    """Tell when an active host goes offline or missing, once per change.

    A host seen for the first time here is recorded without a message, so a fresh install
    (or this feature's first run) does not announce the whole fleet at once.
    """
    from django.urls import reverse

    told = 0
    for host in Host.objects.filter(status=Host.Status.ACTIVE):
        presence = host.presence(now)
        alert, created = PresenceAlert.objects.get_or_create(host=host, defaults={"presence": presence})
        if created or alert.presence == presence:
            continue
        with transaction.atomic():
            # Conditional: two sweeps racing tell the change once.
            if not PresenceAlert.objects.filter(pk=alert.pk, presence=alert.presence).update(
                presence=presence, changed_at=now
            ):
                continue
            if presence in ("offline", "missing"):
                event = Event.HOST_OFFLINE if presence == "offline" else Event.HOST_MISSING
                seen = (
                    timezone.localtime(host.last_seen).strftime("%Y-%m-%d %H:%M %Z")
                    if host.last_seen
                    else "never"
                )
                notify(
                    event,
                    f"{host.name} is {presence}",
                    path=reverse("ocrdash-host", args=[host.name]),
                    host=host.name,
                    lines=[f"Last report: {seen}."],
                    role=roles.Action.MANAGE_HOSTS,
                )
                told += 1
    return told
