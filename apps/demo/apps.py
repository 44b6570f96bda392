"""The demo app's configuration (seed data for `make run`)."""

from django.apps import AppConfig


class DemoConfig(AppConfig):
    """Demo data for `make run`. Sits above every other app: it may import any of them."""

    name = "apps.demo"
    label = "demo"
    verbose_name = "Demo data"
