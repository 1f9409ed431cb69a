"""Beat entry of the retention prune: ``ops.prune_history`` hourly on the "ops" queue, expiring
within its period (created idempotently, update_or_create by name)."""

from django.db import migrations

NAME = "ops: prune history (retention)"
EVERY_S = 3600


def create_entry(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = IntervalSchedule.objects.get_or_create(every=EVERY_S, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults=dict(task="ops.prune_history", interval=schedule, queue="ops", expire_seconds=EVERY_S,
                      enabled=True, description="Created by workers/migrations/0001_prune_history_schedule.py"),
    )


def remove_entry(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("django_celery_beat", "0019_alter_periodictasks_options")]

    operations = [migrations.RunPython(create_entry, remove_entry)]
