"""Webhooks are routed per event and per group, selector or "the rest": each event a webhook
took becomes a route for every host, so nothing it received before stops arriving."""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def events_to_routes(apps, schema_editor):
    WebhookChannel = apps.get_model("models_admin", "WebhookChannel")
    WebhookRoute = apps.get_model("models_admin", "WebhookRoute")
    WebhookRoute.objects.bulk_create(
        WebhookRoute(webhook=hook, event=event, scope="all", created_by=hook.created_by)
        for hook in WebhookChannel.objects.all()
        for event in dict.fromkeys(hook.events or [])
    )


def routes_to_events(apps, schema_editor):
    WebhookChannel = apps.get_model("models_admin", "WebhookChannel")
    for hook in WebhookChannel.objects.all():
        # Only "every host" routes can be said as a plain list; scoped ones are lost going back.
        hook.events = sorted(set(hook.routes.filter(scope="all").values_list("event", flat=True)))
        hook.save(update_fields=["events"])


class Migration(migrations.Migration):
    dependencies = [
        ("models_admin", "0020_audit_actions_after_purge"),
    ]

    operations = [
        migrations.CreateModel(
            name="WebhookRoute",
            fields=[
                (
                    "id",
                    models.UUIDField(default=uuid.uuid4, editable=False, primary_key=True, serialize=False),
                ),
                ("event", models.CharField(max_length=64)),
                (
                    "scope",
                    models.CharField(
                        choices=[
                            ("all", "Every host"),
                            ("group", "Hosts of a group"),
                            ("labels", "Hosts with labels"),
                            ("rest", "The rest: what no group or label route of this event took"),
                        ],
                        default="all",
                        max_length=16,
                    ),
                ),
                ("selector", models.JSONField(blank=True, default=dict)),
                ("created_by", models.CharField(blank=True, max_length=150)),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                (
                    "group",
                    models.ForeignKey(
                        blank=True,
                        null=True,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="models_admin.hostgroup",
                    ),
                ),
                (
                    "webhook",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="routes",
                        to="models_admin.webhookchannel",
                    ),
                ),
            ],
            options={
                "ordering": ["event", "scope", "created_at"],
                "indexes": [models.Index(fields=["event"], name="webhookroute_event")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(
                            models.Q(("scope", "group"), ("group__isnull", False)),
                            models.Q(models.Q(("scope", "group"), _negated=True), ("group__isnull", True)),
                            _connector="OR",
                        ),
                        name="webhookroute_group_iff_group_scope",
                    )
                ],
            },
        ),
        migrations.RunPython(events_to_routes, routes_to_events),
        migrations.RemoveField(
            model_name="webhookchannel",
            name="events",
        ),
    ]
