"""The tenancy app's configuration (organizations, memberships, service accounts, API keys)."""

from django.apps import AppConfig


class TenancyConfig(AppConfig):
    name = "apps.tenancy"
    label = "tenancy"
    verbose_name = "Tenancy"
