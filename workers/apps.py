from django.apps import AppConfig


class WorkersConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'workers'

    def ready(self):
        # Celery worker/beat heartbeats for the healthcheck (signal handlers; see workers.heartbeat).
        from . import heartbeat  # noqa: F401
