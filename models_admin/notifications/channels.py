"""The two ways out: email through Django's backend, webhooks through apprise.

Each ``send_*`` returns nothing and raises ``DeliveryError`` with a reason a person can read
("connection refused by 127.0.0.1:25", "HTTP 500 from the webhook"), stored on the
notification row. Nothing here touches the database.
"""

from __future__ import annotations

import logging
import smtplib

import apprise
from django.conf import settings
from django.core.mail import EmailMessage

from ..masking import mask_url

__all__ = ["DeliveryError", "mask_url", "send_email", "send_webhook"]

log = logging.getLogger(__name__)


class DeliveryError(Exception):
    """A message that did not go out; ``str()`` says why."""


def send_email(address: str, subject: str, body: str) -> None:
    message = EmailMessage(subject=subject, body=body, to=[address], from_email=settings.DEFAULT_FROM_EMAIL)
    try:
        sent = message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused as exc:
        raise DeliveryError(f"the mail server refused {address}") from exc
    except smtplib.SMTPException as exc:
        raise DeliveryError(f"the mail server said: {exc}") from exc
    except (TimeoutError, OSError) as exc:
        where = f"{settings.EMAIL_HOST}:{settings.EMAIL_PORT}"
        raise DeliveryError(f"could not reach the mail server {where}: {exc.strerror or exc}") from exc
    if not sent:
        raise DeliveryError("the mail backend sent nothing")


def send_webhook(url: str, subject: str, body: str) -> None:
    """Post through apprise; its log lines become the reason when it fails."""
    notifier = apprise.Apprise()
    if not notifier.add(url):
        raise DeliveryError(f"not a webhook URL apprise knows: {mask_url(url)}")
    with apprise.LogCapture(level=logging.WARNING, fmt="%(message)s") as captured:
        ok = notifier.notify(title=subject, body=body)
    if not ok:
        lines = [line.strip() for line in captured.getvalue().splitlines() if line.strip()]
        reason = "; ".join(lines[-3:]) or "the webhook did not accept the message"
        raise DeliveryError(reason[:1000])
