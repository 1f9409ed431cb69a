from django.contrib import admin
from django.urls import path

from . import views

admin.site.site_header = "tradeops"
admin.site.site_title = "tradeops admin"
admin.site.index_title = "Accounts, symbols, signals and orders"

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
