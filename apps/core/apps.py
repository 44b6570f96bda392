"""The core app's configuration; ready() registers the system checks and creates the filesystem broker's folders."""

from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self):
        from . import checks  # noqa: F401  (registers system checks)
        from .queue import ensure_broker_folders

        ensure_broker_folders()
