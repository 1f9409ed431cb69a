"""Beat entry of the alerts: ``alerts.evaluate`` every ALERTS_EVALUATE_EVERY_S on the "ops"
queue, expiring within its period (created idempotently, update_or_create by name)."""

from django.conf import settings
from django.db import migrations

NAME = "alerts: evaluate conditions and notify"


def create_entry(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every = settings.ALERTS_EVALUATE_EVERY_S
    schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults=dict(task="alerts.evaluate", interval=schedule, queue="ops", expire_seconds=every, enabled=True,
                      description="Created by alerts/migrations/0002_periodic_evaluate.py"),
    )


def remove_entry(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("alerts", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_entry, remove_entry)]
