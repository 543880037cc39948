"""Django admin: a read-mostly window for superusers. Transitions stay in approvals/workflow.py.

Requests, items, snapshots and reports are shown, not edited: changing a state here would
skip the two-person rule and the audit trail. Audit events cannot be added, changed or
deleted at all (the database refuses too).
"""

from __future__ import annotations

from django import forms
from django.contrib import admin

from .models import (
    AuditEvent,
    Host,
    ModelFile,
    Notification,
    PruneItem,
    PruneRequest,
    ReceivedReport,
    Snapshot,
    WebhookChannel,
    WebhookRoute,
)
from .notifications.events import Event
from .notifications.forms import WEBHOOK_URL_HELP, clean_webhook_url


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Host)
class HostAdmin(admin.ModelAdmin):
    """Status changes go through workflow (accept/retire, audited); here only the view."""

    list_display = ["name", "status", "last_seen", "model_dir_state", "file_count", "total_bytes"]
    list_filter = ["status", "model_dir_state"]
    search_fields = ["name", "hostname"]
    readonly_fields = [f.name for f in Host._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False  # hosts register themselves with their first inventory

    def has_delete_permission(self, request, obj=None) -> bool:
        return False  # retire instead: history keeps pointing at it


class ModelFileInline(admin.TabularInline):
    model = ModelFile
    fields = readonly_fields = ("path", "size", "mtime_ns", "sha256", "known_to_aspose", "is_symlink")
    extra = 0
    can_delete = False
    show_change_link = False
    max_num = 0


@admin.register(Snapshot)
class SnapshotAdmin(ReadOnlyAdmin):
    list_display = ["host", "taken_at", "last_seen_at", "seen_count", "file_count", "total_bytes"]
    list_filter = ["host"]
    list_select_related = ["host"]
    inlines = [ModelFileInline]


class PruneItemInline(admin.TabularInline):
    model = PruneItem
    fields = readonly_fields = (
        "path",
        "size",
        "sha256",
        "known_to_aspose",
        "outcome",
        "detail",
        "bytes_reclaimed",
    )
    extra = 0
    can_delete = False
    max_num = 0


@admin.register(PruneRequest)
class PruneRequestAdmin(ReadOnlyAdmin):
    list_display = ["short_id", "host", "kind", "state", "policy", "requested_by", "decided_by", "created_at"]
    list_filter = ["state", "kind", "policy"]
    list_select_related = ["host", "requested_by", "decided_by"]
    search_fields = ["id", "host__name", "reason"]
    inlines = [PruneItemInline]


@admin.register(ReceivedReport)
class ReceivedReportAdmin(ReadOnlyAdmin):
    list_display = ["received_at", "host_name", "kind", "status", "reason"]
    list_filter = ["status", "kind"]
    search_fields = ["report_id", "host_name"]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["at", "actor", "action", "host", "object_type", "object_id"]
    list_filter = ["action"]
    search_fields = ["actor", "host", "object_id"]
    date_hierarchy = "at"


# ---------------------------------------------------------------- notifications


class WebhookChannelForm(forms.ModelForm):
    """The URL is write-only: typed in once, then shown masked; left empty on a change, it stays."""

    url = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
        help_text=WEBHOOK_URL_HELP,
    )

    class Meta:
        model = WebhookChannel
        fields = ["name", "url", "enabled"]

    def clean_url(self) -> str:
        return clean_webhook_url(self.cleaned_data["url"], self.instance.url if self.instance.pk else "")


class WebhookRouteInline(admin.TabularInline):
    """Shown here, changed on the dashboard's webhook page (``/settings/webhooks/``), which
    checks a route's group or labels the way routing reads them."""

    model = WebhookRoute
    fields = ["event", "scope", "group", "selector", "created_by", "created_at"]
    readonly_fields = ["event", "scope", "group", "selector", "created_by", "created_at"]
    extra = 0
    can_delete = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(WebhookChannel)
class WebhookChannelAdmin(admin.ModelAdmin):
    form = WebhookChannelForm
    inlines = [WebhookRouteInline]
    list_display = ["name", "masked_url", "routed_events", "enabled"]
    readonly_fields = ["masked_url", "created_by", "created_at"]

    @admin.display(description="events")
    def routed_events(self, obj: WebhookChannel) -> str:
        labels = dict(Event.choices)
        events = dict.fromkeys(obj.routes.values_list("event", flat=True))
        return "; ".join(labels.get(e, e) for e in events) or "(none)"

    def save_model(self, request, obj, form, change) -> None:
        if not change:
            obj.created_by = request.user.get_username()
        super().save_model(request, obj, form, change)


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """What was sent to whom, and why a delivery failed: the admins' delivery log."""

    list_display = ["created_at", "event", "kind", "recipient", "status", "attempts", "error", "sent_at"]
    list_filter = ["status", "kind", "event"]
    search_fields = ["recipient", "subject", "host"]
    date_hierarchy = "created_at"
