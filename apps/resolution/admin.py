"""Resolution's additions to the admin: the "check readiness" and "export configuration" actions
on variables (they need this app, which sits above variables)."""

from django.contrib import admin, messages
from django.db.models import Q
from django.http import HttpResponse
from django.template.response import TemplateResponse

from apps.core.errors import DomainError
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.pipelines.selectors import pipelines_for
from apps.tenancy.permissions import is_org_admin
from apps.variables.admin import VariableAdmin

from . import config_io
from . import services as resolution_services

MAX_READINESS_PIPELINES = 50


@admin.action(description="Check readiness of the selected variables' pipelines")
def check_readiness(self, request, queryset):
    scopes = Q(pk__in=[])
    scope_rows = queryset.values_list("organization_id", "project_id", "pipeline_id")
    for organization_id, project_id, pipeline_id in scope_rows:
        if pipeline_id:
            scopes |= Q(pk=pipeline_id)
        elif project_id:
            scopes |= Q(project_id=project_id)
        else:
            scopes |= Q(project__organization_id=organization_id)
    pipelines = list(
        pipelines_for(request.user)
        .filter(scopes)
        .order_by("project__organization__name", "project__slug", "slug")[: MAX_READINESS_PIPELINES + 1]
    )
    if len(pipelines) > MAX_READINESS_PIPELINES:
        pipelines = pipelines[:MAX_READINESS_PIPELINES]
        self.message_user(
            request, f"Showing the first {MAX_READINESS_PIPELINES} pipelines only.", level=messages.WARNING
        )
    rows = []
    for pipeline in pipelines:
        environments = perms.environments_where(
            request.user,
            perms.VIEW,
            Environment.objects.filter(organization_id=pipeline.project.organization_id),
        ).order_by("position")
        cells = []
        for environment in environments:
            try:
                result = resolution_services.readiness(request.user, pipeline, environment)
            except DomainError as exc:
                cells.append({"environment": environment, "ready": False, "problems": [exc.message]})
                continue
            problems = [
                problem["message"]
                for key in ("missing_variables", "unbound_connections", "unresolvable_secrets", "other_errors")
                for problem in result[key]
            ]
            cells.append({"environment": environment, "ready": result["ready"], "problems": problems})
        rows.append({"pipeline": pipeline, "cells": cells})
    if not rows:
        self.message_user(request, "The selected variables' scopes have no pipelines yet.", level=messages.INFO)
        return None
    context = self._action_context(request, queryset, "Readiness")
    context["rows"] = rows
    return TemplateResponse(request, "admin/variables/variable/readiness.html", context)


@admin.action(description="Export configuration (YAML) of the selected variables' organization")
def export_configuration(self, request, queryset):
    organization = self._single_organization(request, queryset)
    if organization is None:
        return None
    # The export holds every environment's configuration: organization administrators only.
    if not is_org_admin(request.user, organization):
        self.message_user(
            request, f"Only owners and admins of '{organization.slug}' export its configuration.", messages.ERROR
        )
        return None
    text = config_io.dump_yaml(config_io.export_configuration(organization))
    response = HttpResponse(text, content_type="application/yaml; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{organization.slug}-configuration.yaml"'
    return response


VariableAdmin.actions = [*VariableAdmin.actions, check_readiness, export_configuration]
