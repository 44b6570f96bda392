"""The connections app's configuration (connection roles, per-environment bindings, connection tests)."""

from django.apps import AppConfig


class ConnectionsConfig(AppConfig):
    name = "apps.connections"
    label = "connections"
    verbose_name = "Connections"
