from django.apps import AppConfig


class AccountsConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'accounts'

    def ready(self):
        from django.db.models.signals import post_migrate

        from . import audit_auth  # noqa: F401 - connects the login receivers
        from .roles import sync_roles

        post_migrate.connect(sync_roles, dispatch_uid="accounts_sync_roles")
