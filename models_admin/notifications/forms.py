"""The webhook and route forms (the settings page and the admin share the URL rule)."""

from __future__ import annotations

import apprise
from django import forms

from ..fleet import labels
from ..models import HostGroup, WebhookChannel, WebhookRoute
from .events import Event

WEBHOOK_URL_HELP = (
    "Any URL apprise knows: https://hooks.slack.com/services/..., a Teams webhook, "
    "json://host:port/path for a generic JSON webhook. Stored, never shown again in full."
)


def clean_webhook_url(url: str, current: str = "") -> str:
    """The URL to store: the typed one if apprise knows it; empty keeps ``current`` (write-only)."""
    url = (url or "").strip()
    if not url:
        if current:
            return current
        raise forms.ValidationError("A webhook needs its URL.")
    if apprise.Apprise.instantiate(url) is None:
        raise forms.ValidationError("apprise does not know this kind of URL.")
    return url


class WebhookForm(forms.Form):
    name = forms.CharField(max_length=100)
    url = forms.CharField(
        max_length=2000, widget=forms.PasswordInput(attrs={"autocomplete": "off"}), help_text=WEBHOOK_URL_HELP
    )

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if WebhookChannel.objects.filter(name=name).exists():
            raise forms.ValidationError(f"There is already a webhook named {name}.")
        return name

    def clean_url(self) -> str:
        return clean_webhook_url(self.cleaned_data["url"])


class RouteForm(forms.Form):
    """One route: an event, and for whom (every host, a group, labels, or the rest)."""

    webhook = forms.ModelChoiceField(queryset=WebhookChannel.objects.all(), to_field_name="name")
    event = forms.ChoiceField(choices=Event.choices)
    scope = forms.ChoiceField(choices=WebhookRoute.Scope.choices)
    group = forms.ModelChoiceField(queryset=HostGroup.objects.all(), to_field_name="name", required=False)
    selector = forms.CharField(required=False, max_length=2000)

    def clean(self) -> dict:
        data = super().clean() or {}
        scope = data.get("scope")
        try:
            data["selector"] = labels.parse_selector(data.get("selector") or "", what="labels")
        except labels.LabelError as exc:
            self.add_error("selector", str(exc))
            return data
        if scope == WebhookRoute.Scope.GROUP and data.get("group") is None:
            self.add_error("group", "Choose the group whose hosts this route is for.")
        if scope == WebhookRoute.Scope.LABELS and not data["selector"]:
            self.add_error("selector", "Give the labels, e.g. env=prod,region=eu.")
        if scope != WebhookRoute.Scope.GROUP:
            data["group"] = None
        if scope != WebhookRoute.Scope.LABELS:
            data["selector"] = {}
        return data
