from django.apps import AppConfig


class VariablesConfig(AppConfig):
    name = "apps.variables"
    label = "variables"
    verbose_name = "Variables"
