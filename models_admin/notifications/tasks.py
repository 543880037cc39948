"""Celery tasks of notifications, on their own queue (``ocrdash.notify``) so a slow mail server
never delays ingest. Registered through ``models_admin.tasks``, which imports this module."""

from __future__ import annotations

from celery import shared_task

from . import delivery
from .send import DELIVER_TASK, SWEEP_TASK


@shared_task(name=DELIVER_TASK, bind=True, acks_late=True)
def deliver(self, notification_id: str) -> str:
    """Send one notification; on failure retry after a growing delay, up to NOTIFY_MAX_ATTEMPTS."""
    status, retry_in = delivery.deliver(notification_id)
    if retry_in is not None:
        # If the broker cannot take the retry either, the row stays "retrying" with its due
        # time and the sweep enqueues it then.
        raise self.retry(countdown=retry_in, max_retries=None)
    return status


@shared_task(name=SWEEP_TASK)
def sweep() -> dict[str, int]:
    """Every minute (beat): lost deliveries again, digests that are due, presence changes."""
    return delivery.sweep()
