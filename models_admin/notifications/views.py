"""The signed-in user's notification preferences (per event email or nothing, the digest), and
the admins' webhook page: webhooks and their routes per event and per group or labels."""

from __future__ import annotations

from typing import cast

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from ..flash import flash_form_errors
from ..models import (
    AuditEvent,
    HostGroup,
    Notification,
    NotificationPreference,
    NotificationProfile,
    WebhookChannel,
    WebhookRoute,
)
from ..security.roles import Action, can, require
from . import routing
from . import webhooks as webhooks_admin
from .events import Event
from .forms import WEBHOOK_URL_HELP, RouteForm, WebhookForm

Channel = NotificationPreference.Channel
DIGEST_CHOICES = [
    (0, "One email per event"),
    (15, "At most one email every 15 minutes"),
    (60, "At most one email an hour"),
    (240, "At most one email every 4 hours"),
    (1440, "At most one email a day"),
]


class PreferencesForm(forms.Form):
    digest_minutes = forms.TypedChoiceField(choices=DIGEST_CHOICES, coerce=int, label="How often")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for event in Event:
            self.fields[event.value] = forms.ChoiceField(
                choices=Channel.choices, label=event.label, widget=forms.RadioSelect
            )


def preferences(request: HttpRequest) -> HttpResponse:
    user = cast(User, request.user)  # LoginRequiredMiddleware: never anonymous here
    chosen = dict(NotificationPreference.objects.filter(user=user).values_list("event", "channel"))
    profile = NotificationProfile.objects.filter(user=user).first()
    initial: dict[str, object] = {e.value: chosen.get(e.value, Channel.EMAIL) for e in Event}
    initial["digest_minutes"] = profile.digest_minutes if profile else 0
    if request.method == "POST":
        form = PreferencesForm(request.POST, initial=initial)
        if form.is_valid():
            _save(user, form.cleaned_data, initial)
            messages.success(request, "Notification preferences saved.")
            return redirect("ocrdash-notification-preferences")
    else:
        form = PreferencesForm(initial=initial)
    recent = Notification.objects.filter(user=user).order_by("-created_at")[:20]
    return render(
        request,
        "models_admin/notification_preferences.html",
        {
            "form": form,
            "event_fields": [form[e.value] for e in Event],
            "recent": recent,
            "no_email": not user.email,
            "can_configure": can(user, Action.CONFIGURE),
            "nav": "account",
        },
    )


def _save(user: User, data: dict, before: dict) -> None:
    with transaction.atomic():
        for event in Event:
            NotificationPreference.objects.update_or_create(
                user=user, event=event.value, defaults={"channel": data[event.value]}
            )
        NotificationProfile.objects.update_or_create(
            user=user, defaults={"digest_minutes": data["digest_minutes"]}
        )
        changed = {k: data[k] for k in data if data[k] != before.get(k)}
        if changed:
            AuditEvent.record(
                AuditEvent.Action.SETTINGS_CHANGED,
                actor=user.get_username(),
                what="notification preferences",
                changed={k: str(v) for k, v in changed.items()},
            )


# ---------------------------------------------------------------- webhooks and their routes (admins)


def webhooks(request: HttpRequest) -> HttpResponse:
    """Every webhook with its routes, the forms to add both, and the latest webhook deliveries."""
    require(request, Action.CONFIGURE)
    hooks = list(WebhookChannel.objects.prefetch_related("routes__group").order_by("name"))
    labels_of = dict(Event.choices)
    rows = [
        {
            "hook": hook,
            "routes": [
                {"route": r, "event": labels_of.get(r.event, r.event), "scope": routing.describe(r)}
                for r in sorted(hook.routes.all(), key=lambda r: (r.event, r.scope, r.created_at))
            ],
        }
        for hook in hooks
    ]
    deliveries = (
        Notification.objects.filter(kind=Notification.Kind.WEBHOOK)
        .select_related("webhook")
        .order_by("-created_at")[:20]
    )
    return render(
        request,
        "models_admin/webhooks.html",
        {
            "rows": rows,
            "events": Event.choices,
            "scopes": WebhookRoute.Scope.choices,
            "groups": HostGroup.objects.order_by("name"),
            "deliveries": deliveries,
            "event_labels": labels_of,
            "url_help": WEBHOOK_URL_HELP,
            "nav": "account",
        },
    )


@require_POST
def webhook_add(request: HttpRequest) -> HttpResponse:
    require(request, Action.CONFIGURE)
    form = WebhookForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("ocrdash-webhooks")
    hook = webhooks_admin.add_webhook(form.cleaned_data["name"], form.cleaned_data["url"], user=request.user)
    messages.success(request, f"Webhook {hook.name} added ({hook.masked_url}). Route events to it below.")
    return redirect("ocrdash-webhooks")


@require_POST
def webhook_change(request: HttpRequest) -> HttpResponse:
    """Enable, disable or delete the webhook named in the form."""
    require(request, Action.CONFIGURE)
    hook = get_object_or_404(WebhookChannel, name=request.POST.get("webhook", ""))
    what = request.POST.get("do")
    if what == "delete":
        webhooks_admin.delete_webhook(hook, user=request.user)
        messages.success(request, f"Webhook {hook.name} deleted with its routes.")
    elif what in ("enable", "disable"):
        webhooks_admin.set_enabled(hook, what == "enable", user=request.user)
        messages.success(request, f"Webhook {hook.name} {what}d.")
    else:
        messages.error(request, "Say enable, disable or delete.")
    return redirect("ocrdash-webhooks")


@require_POST
def route_add(request: HttpRequest) -> HttpResponse:
    require(request, Action.CONFIGURE)
    form = RouteForm(request.POST)
    if not form.is_valid():
        flash_form_errors(request, form)
        return redirect("ocrdash-webhooks")
    data = form.cleaned_data
    route = webhooks_admin.add_route(
        data["webhook"],
        data["event"],
        data["scope"],
        user=request.user,
        group=data["group"],
        selector=data["selector"],
    )
    messages.success(
        request,
        f"{Event(route.event).label} for {routing.describe(route)} now goes to {route.webhook.name}.",
    )
    return redirect("ocrdash-webhooks")


@require_POST
def route_delete(request: HttpRequest, route_id) -> HttpResponse:
    require(request, Action.CONFIGURE)
    route = get_object_or_404(WebhookRoute.objects.select_related("webhook", "group"), id=route_id)
    webhooks_admin.delete_route(route, user=request.user)
    messages.success(request, f"Route removed from {route.webhook.name}.")
    return redirect("ocrdash-webhooks")
