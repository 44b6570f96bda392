"""The environments app's configuration; ready() connects its receivers of tenancy hooks."""

from django.apps import AppConfig


class EnvironmentsConfig(AppConfig):
    name = "apps.environments"
    label = "environments"
    verbose_name = "Environments"

    def ready(self):
        from . import receivers  # noqa: F401  (connects tenancy hooks)
