"""The default periodic tasks, as django-celery-beat rows (beat runs the DatabaseScheduler).

Idempotent: rows are found by name and never overwritten, so an interval an approver
changed on the settings page survives a re-run of migrate. The task names are the ones
models_admin/tasks.py registers; the router sends them to the ocrdash.dashboard queue.
"""

from django.db import migrations
from django.utils import timezone

DEFAULTS = (
    # (PeriodicTask.name, task name, every N minutes)
    ("ocrdash: expire stale requests", "ocrdash.dashboard.expire_stale", 5),
    ("ocrdash: resend unanswered orders", "ocrdash.dashboard.resend_unanswered", 5),
    # The same row models_admin/schedules.py edits (found there by task name).
    ("ocrdash: fleet inventory", "ocrdash.dashboard.fleet_inventory", 60),
)


def add_schedules(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    for name, task, minutes in DEFAULTS:
        if PeriodicTask.objects.filter(task=task).exists():
            continue
        interval = IntervalSchedule.objects.filter(every=minutes, period="minutes").order_by("id").first()
        if interval is None:
            interval = IntervalSchedule.objects.create(every=minutes, period="minutes")
        PeriodicTask.objects.get_or_create(name=name, defaults={"task": task, "interval": interval})
    # Historical models send no signals: tell a running beat that its schedule changed.
    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def remove_schedules(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in DEFAULTS]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("models_admin", "0002_audit_append_only_and_groups"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(add_schedules, remove_schedules)]
