"""Changing webhooks and their routes: each change is one transaction with its audit event.

Pages call these; matching lives in ``routing``. The URL never enters the audit trail, only
its masked form.
"""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from ..models import AuditEvent, HostGroup, WebhookChannel, WebhookRoute
from .events import Event
from .routing import describe


def _actor(user) -> str:
    return user.get_username() if user is not None else "system"


def add_webhook(name: str, url: str, *, user) -> WebhookChannel:
    with transaction.atomic():
        hook = WebhookChannel.objects.create(name=name, url=url, created_by=_actor(user))
        AuditEvent.record(
            AuditEvent.Action.SETTINGS_CHANGED,
            actor=_actor(user),
            what=f"webhook {name} added",
            url=hook.masked_url,
        )
    return hook


def set_enabled(hook: WebhookChannel, enabled: bool, *, user) -> None:
    with transaction.atomic():
        if WebhookChannel.objects.filter(pk=hook.pk).exclude(enabled=enabled).update(enabled=enabled):
            AuditEvent.record(
                AuditEvent.Action.SETTINGS_CHANGED,
                actor=_actor(user),
                what=f"webhook {hook.name} {'enabled' if enabled else 'disabled'}",
            )


def delete_webhook(hook: WebhookChannel, *, user) -> None:
    with transaction.atomic():
        routes = [
            f"{Event(r.event).label if r.event in Event.values else r.event}: {describe(r)}"
            for r in hook.routes.all()
        ]
        hook.delete()  # its routes go with it; its sent notifications keep their masked recipient
        AuditEvent.record(
            AuditEvent.Action.SETTINGS_CHANGED,
            actor=_actor(user),
            what=f"webhook {hook.name} deleted",
            routes=routes,
        )


def add_route(
    hook: WebhookChannel,
    event: str,
    scope: str,
    *,
    user,
    group: HostGroup | None = None,
    selector: Mapping[str, str] | None = None,
) -> WebhookRoute:
    """Add a route unless the same one exists (adding twice is harmless: one message per webhook)."""
    with transaction.atomic():
        route, created = WebhookRoute.objects.get_or_create(
            webhook=hook,
            event=event,
            scope=scope,
            group=group,
            selector=dict(selector or {}),
            defaults={"created_by": _actor(user)},
        )
        if created:
            AuditEvent.record(
                AuditEvent.Action.SETTINGS_CHANGED,
                actor=_actor(user),
                what=f"webhook {hook.name}: route added",
                event=event,
                scope=describe(route),
            )
    return route


def delete_route(route: WebhookRoute, *, user) -> None:
    with transaction.atomic():
        said = describe(route)
        route.delete()
        AuditEvent.record(
            AuditEvent.Action.SETTINGS_CHANGED,
            actor=_actor(user),
            what=f"webhook {route.webhook.name}: route removed",
            event=route.event,
            scope=said,
        )
