from django.apps import AppConfig


class DashboardConfig(AppConfig):
    name = "tradeops.dashboard"
    label = "dashboard"
    verbose_name = "Dashboard"
