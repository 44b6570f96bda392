"""API for variable definitions and per-environment overrides (ETag/If-Match on updates)."""

from rest_framework import serializers

from apps.core.api import StrictSerializer, VisibleRelatedField
from apps.core.filtersets import organization_filterset
from apps.core.viewsets import ETagServiceViewSet, PerEnvironmentRowViewSet, service_family
from apps.environments.api import environment_reference, environment_row_serializer
from apps.environments.models import Kind
from apps.pipelines.models import Pipeline, Project
from apps.secrets.api import secret_reference, secret_shown
from apps.tenancy.api import MemberOrganizationField, organization_shown

from . import selectors, services
from .models import VARIABLE_SETTINGS, Variable, VariableOverride, VariableType


class VariableSerializer(serializers.ModelSerializer):
    organization = organization_shown()
    default_secret = secret_shown("default_secret")
    scope = serializers.CharField(read_only=True)

    class Meta:
        model = Variable
        fields = [
            "id",
            "organization",
            "project",
            "pipeline",
            "scope",
            "name",
            *VARIABLE_SETTINGS,
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class _DefinitionFields(StrictSerializer):
    type = serializers.ChoiceField(choices=VariableType.choices, required=False)
    default_value = serializers.JSONField(required=False, allow_null=True)
    default_secret = secret_reference(required=False, allow_null=True)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    required_in = serializers.ListField(child=serializers.ChoiceField(choices=Kind.choices), required=False)
    choices = serializers.ListField(child=serializers.JSONField(), required=False, allow_null=True, max_length=500)
    regex = serializers.CharField(max_length=500, required=False, allow_blank=True)
    min_value = serializers.FloatField(required=False, allow_null=True)
    max_value = serializers.FloatField(required=False, allow_null=True)
    allow_runtime_override = serializers.BooleanField(required=False)


class VariableCreateSerializer(_DefinitionFields):
    organization = MemberOrganizationField()
    project = VisibleRelatedField(Project, required=False, allow_null=True)
    pipeline = VisibleRelatedField(Pipeline, required=False, allow_null=True)
    name = serializers.CharField(max_length=64)


class VariableViewSet(ETagServiceViewSet):
    """Variable definitions at organization, project or pipeline scope."""

    serializer_class = VariableSerializer
    create_serializer_class = VariableCreateSerializer
    update_serializer_class = _DefinitionFields
    filterset_class = organization_filterset(Variable, ["organization", "project", "pipeline", "name", "type"])
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    visible = selectors.variables_for
    writes = service_family(services, "variable")


class OverrideSerializer(environment_row_serializer(VariableOverride, "variable", "value", "secret")):  # type: ignore[misc]  # a base built per model
    secret = secret_shown("secret")


class OverrideCreateSerializer(StrictSerializer):
    variable = VisibleRelatedField(Variable)
    environment = environment_reference()
    value = serializers.JSONField(required=False, allow_null=True)
    secret = secret_reference(required=False, allow_null=True)


class OverrideUpdateSerializer(StrictSerializer):
    value = serializers.JSONField(required=False, allow_null=True)
    secret = secret_reference(required=False, allow_null=True)


class OverrideViewSet(PerEnvironmentRowViewSet):
    """A variable's value in one environment, shared or personal: a secret given replaces the value
    (unless a value is given too)."""

    organization_through = "variable"
    row_values = ("value", "secret")

    def updated_values(self, override, fields):
        value = fields.get("value", override.value if "secret" not in fields else None)
        return {"value": value, "secret": fields.get("secret", override.secret)}


class VariableOverrideViewSet(OverrideViewSet):
    """A variable's value in one environment. Writing needs change_environment_config there
    (and manage_environment while the environment is locked)."""

    serializer_class = OverrideSerializer
    create_serializer_class = OverrideCreateSerializer
    update_serializer_class = OverrideUpdateSerializer
    visible = selectors.overrides_for
    writes = service_family(services, "variable_override", "set", "delete", instance="override")
