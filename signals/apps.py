from django.apps import AppConfig


class SignalsConfig(AppConfig):
    default_auto_field = 'django.db.models.BigAutoField'
    name = 'signals'

    def ready(self) -> None:
        # A saved symbol or strategy row drops the configuration cached for wake-ups in this
        # process (signals.service.pass_config); other processes see it within CONFIG_MAX_AGE_S.
        from django.db.models.signals import post_delete, post_save

        from marketdata.models import Symbol

        from .models import StrategyConfig
        from .service import forget_config

        for model in (Symbol, StrategyConfig):
            post_save.connect(forget_config, sender=model, dispatch_uid=f"signals_forget_config_{model.__name__}_save")
            post_delete.connect(forget_config, sender=model, dispatch_uid=f"signals_forget_config_{model.__name__}_del")
