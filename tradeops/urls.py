from django.contrib import admin
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import path
from django.views.generic import RedirectView

from backtest import views as backtest_views
from dashboard import views as dashboard_views
from dashboard.metrics import metrics_view

admin.site.site_header = "tradeops"
admin.site.site_title = "tradeops admin"
admin.site.index_title = "Accounts, symbols, signals and orders"
admin.site.site_url = None  # no public site: the header links to the dashboard instead

urlpatterns = [
    path("", RedirectView.as_view(pattern_name="dashboard", permanent=False)),
    path("favicon.ico", lambda request: redirect(static("favicon.svg"), permanent=True)),
    path("healthz", dashboard_views.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("dashboard/", dashboard_views.dashboard, name="dashboard"),
    path("dashboard/panels/", dashboard_views.panels, name="dashboard-panels"),
    path("backtests/", backtest_views.run_page, name="backtests"),
    path("backtests/<int:pk>/", backtest_views.run_page, name="backtest-run"),
    path("admin/", admin.site.urls),
]
