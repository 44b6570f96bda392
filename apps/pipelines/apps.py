"""The pipelines app's configuration (projects, pipelines, immutable versions)."""

from django.apps import AppConfig


class PipelinesConfig(AppConfig):
    name = "apps.pipelines"
    label = "pipelines"
    verbose_name = "Pipelines"
