from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Core"

    def ready(self):
        from planasonix_env.celery import ensure_broker_folders

        from . import checks  # noqa: F401  (registers system checks)

        ensure_broker_folders()
