"""The runs app's configuration (deployments, schedules, runs, the built-in executor)."""

from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "apps.runs"
    label = "runs"
    verbose_name = "Runs"
