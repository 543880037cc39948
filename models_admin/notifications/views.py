"""The signed-in user's notification preferences: per event email or nothing, and the digest."""

from __future__ import annotations

from typing import cast

from django import forms
from django.contrib import messages
from django.contrib.auth.models import User
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render

from ..models import AuditEvent, Notification, NotificationPreference, NotificationProfile
from .events import Event

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
