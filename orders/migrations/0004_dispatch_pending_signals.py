"""Beat entry re-dispatching signals whose dispatch message was lost (orders.dispatch_pending_signals)."""

from django.db import migrations

NAME = "orders: dispatch signals left new (lost dispatch message)"
TASK = "orders.dispatch_pending_signals"
EVERY = 10


def create_entry(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = IntervalSchedule.objects.get_or_create(every=EVERY, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME,
        defaults=dict(task=TASK, interval=schedule, queue="orders", expire_seconds=EVERY, enabled=True,
                      description="Created by orders/migrations/0004_dispatch_pending_signals.py"),
    )


def remove_entry(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0003_exposure_indexes"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_entry, remove_entry)]
