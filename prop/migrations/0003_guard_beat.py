"""Beat entry of the breach guard (``prop.guard_accounts``), created idempotently; it runs on the
"orders" queue and expires within its period."""

from django.db import migrations

NAME = "prop: breach guard (close-only, flatten at the loss limits)"
EVERY = 2


def create(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = IntervalSchedule.objects.get_or_create(every=EVERY, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME, defaults=dict(task="prop.guard_accounts", interval=schedule, queue="orders", expire_seconds=EVERY,
                                 enabled=True, description="Created by prop/migrations/0003_guard_beat.py"))


def remove(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [("prop", "0002_default_and_example_profiles"),
                    ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(create, remove)]
