"""The insights app's configuration; ready() adds the dashboard to the admin index (a hook in core)."""

from django.apps import AppConfig


class InsightsConfig(AppConfig):
    name = "apps.insights"
    label = "insights"
    verbose_name = "Insights"

    def ready(self):
        from apps.core.admin_site import DASHBOARD_PROVIDERS

        from .dashboard import dashboard

        if dashboard not in DASHBOARD_PROVIDERS:
            DASHBOARD_PROVIDERS.append(dashboard)
