"""The secrets app's configuration; ready() installs the masking of secret values in logs."""

from django.apps import AppConfig


class SecretsConfig(AppConfig):
    name = "apps.secrets"
    label = "secrets"
    verbose_name = "Secrets"

    def ready(self):
        from .masking import install_log_masking

        install_log_masking()
