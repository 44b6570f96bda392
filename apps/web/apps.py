"""The web app's configuration (the server-rendered screens)."""

from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "apps.web"
    label = "web"
    verbose_name = "Web screens"
