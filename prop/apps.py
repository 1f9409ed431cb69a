from django.apps import AppConfig


class PropConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "prop"
    verbose_name = "Prop-firm rules"
