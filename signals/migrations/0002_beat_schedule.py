"""The default analysis schedule: every second, editable in the admin (django-celery-beat)."""

from django.db import migrations

TASK_NAME = "analyze market"


def create_schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults=dict(
            task="signals.analyze_market",
            interval=every_second,
            queue="analysis",
            expire_seconds=1,  # never longer than the period: no stale replay after a pause
            enabled=True,
            description="Analyse every enabled symbol's market window; store and dispatch signals.",
        ),
    )


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("signals", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
