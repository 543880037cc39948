"""Daily snapshot compaction with the default retention (models_admin/inventory/compaction.py).

The retention lives in the task's kwargs, which the settings page edits; like 0003, an
existing row (found by task name) is left as an approver set it.
"""

import json

from django.db import migrations
from django.utils import timezone

NAME = "ocrdash: compact snapshots"
TASK = "ocrdash.dashboard.compact_snapshots"
EVERY_MINUTES = 24 * 60
# compaction.DEFAULT_DAILY_AFTER_DAYS / DEFAULT_WEEKLY_AFTER_DAYS, frozen here as a
# migration must not change when the code's defaults do.
KWARGS = {"daily_after_days": 30, "weekly_after_days": 180}


def add_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    if PeriodicTask.objects.filter(task=TASK).exists():
        return
    interval = IntervalSchedule.objects.filter(every=EVERY_MINUTES, period="minutes").order_by("id").first()
    if interval is None:
        interval = IntervalSchedule.objects.create(every=EVERY_MINUTES, period="minutes")
    PeriodicTask.objects.get_or_create(
        name=NAME, defaults={"task": TASK, "interval": interval, "kwargs": json.dumps(KWARGS)}
    )
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("models_admin", "0003_default_schedules")]

    operations = [migrations.RunPython(add_schedule, remove_schedule)]
