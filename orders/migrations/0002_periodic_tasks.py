"""Beat entries of the order engine, created idempotently (update_or_create by name).

Each entry runs on the "orders" queue and expires within its period, so a backlog (a stopped
worker) never replays a pile of stale runs.
"""

from django.db import migrations

ENTRIES = [
    # (entry name, task, every seconds)
    ("orders: manage positions (time stops, opposite signals)", "orders.manage_positions", 5),
    ("orders: sync account balances", "orders.sync_accounts", 30),
    ("orders: reconcile accounts with the broker", "orders.reconcile_accounts", 60),
]


def create_entries(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every in ENTRIES:
        schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.update_or_create(
            name=name,
            defaults=dict(task=task, interval=schedule, queue="orders", expire_seconds=every, enabled=True,
                          description="Created by orders/migrations/0002_periodic_tasks.py"),
        )


def remove_entries(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in ENTRIES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("orders", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_entries, remove_entries)]
