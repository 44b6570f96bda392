"""The variables app's configuration; ready() adds the check that refuses secret values in a pipeline graph."""

from django.apps import AppConfig


class VariablesConfig(AppConfig):
    name = "apps.variables"
    label = "variables"
    verbose_name = "Variables"

    def ready(self):
        from apps.pipelines import services as pipeline_services

        from .services import refuse_secrets_in_graph

        if refuse_secrets_in_graph not in pipeline_services.version_checks:
            pipeline_services.version_checks.append(refuse_secrets_in_graph)
