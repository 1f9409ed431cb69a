from django.apps import AppConfig


class BacktestConfig(AppConfig):
    name = "backtest"
    verbose_name = "Backtests"
    default_auto_field = "django.db.models.BigAutoField"
