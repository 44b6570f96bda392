"""The resolution app's configuration (the layering engine, config as code)."""

from django.apps import AppConfig


class ResolutionConfig(AppConfig):
    name = "apps.resolution"
    label = "resolution"
    verbose_name = "Resolution"
