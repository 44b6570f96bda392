"""API for variable definitions and per-environment overrides (ETag/If-Match on updates)."""

from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from apps.core.api import ETagMixin, StrictSerializer, VisibleRelatedField
from apps.core.errors import field_error
from apps.environments.models import Environment, Kind
from apps.pipelines.models import Pipeline, Project
from apps.secrets.selectors import secret_named
from apps.tenancy.api import MemberOrganizationField

from . import selectors, services
from .models import Variable, VariableOverride, VariableType


class VariableSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    default_secret = serializers.SerializerMethodField()
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
            "type",
            "default_value",
            "default_secret",
            "description",
            "required_in",
            "choices",
            "regex",
            "min_value",
            "max_value",
            "allow_runtime_override",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_default_secret(self, obj) -> str | None:
        return obj.default_secret.display_reference if obj.default_secret else None


class _DefinitionFields(StrictSerializer):
    type = serializers.ChoiceField(choices=VariableType.choices, required=False)
    default_value = serializers.JSONField(required=False, allow_null=True)
    default_secret = serializers.CharField(max_length=64, required=False, allow_null=True)
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


class VariableFilter(filters.FilterSet):
    organization = filters.CharFilter(field_name="organization__slug")

    class Meta:
        model = Variable
        fields = ["organization", "project", "pipeline", "name", "type"]


class VariableViewSet(ETagMixin, viewsets.ModelViewSet):
    """Variable definitions at organization, project or pipeline scope."""

    queryset = Variable.objects.none()
    serializer_class = VariableSerializer
    filterset_class = VariableFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.variables_for(self.request.user)

    @extend_schema(request=VariableCreateSerializer, responses={201: VariableSerializer})
    def create(self, request):
        data = VariableCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        organization = fields.pop("organization")
        if "default_secret" in fields:
            fields["default_secret"] = secret_named(organization, fields["default_secret"], "default_secret")
        variable = services.variable_create(actor=request.user, organization=organization, **fields)
        return Response(VariableSerializer(variable).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=_DefinitionFields, responses=VariableSerializer)
    def partial_update(self, request, pk=None):
        data = _DefinitionFields(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            variable = self.locked_object()
            fields = dict(data.validated_data)
            if "default_secret" in fields:
                fields["default_secret"] = secret_named(
                    variable.organization, fields["default_secret"], "default_secret"
                )
            variable = services.variable_update(actor=request.user, variable=variable, **fields)
        return self.with_etag(Response(VariableSerializer(variable).data), variable)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.variable_delete(actor=request.user, variable=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class OverrideSerializer(serializers.ModelSerializer):
    variable_name = serializers.CharField(source="variable.name", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    secret = serializers.SerializerMethodField()

    class Meta:
        model = VariableOverride
        fields = ["id", "variable", "variable_name", "environment", "value", "secret", "created_at", "updated_at"]
        read_only_fields = fields

    def get_secret(self, obj) -> str | None:
        return obj.secret.display_reference if obj.secret else None


class OverrideCreateSerializer(StrictSerializer):
    variable = VisibleRelatedField(Variable)
    environment = serializers.SlugField(max_length=63)
    value = serializers.JSONField(required=False, allow_null=True)
    secret = serializers.CharField(max_length=64, required=False, allow_null=True)


class OverrideUpdateSerializer(StrictSerializer):
    value = serializers.JSONField(required=False, allow_null=True)
    secret = serializers.CharField(max_length=64, required=False, allow_null=True)


class OverrideFilter(filters.FilterSet):
    environment = filters.CharFilter(field_name="environment__slug")
    organization = filters.CharFilter(field_name="environment__organization__slug")

    class Meta:
        model = VariableOverride
        fields = ["variable", "environment", "organization"]


class VariableOverrideViewSet(ETagMixin, viewsets.ModelViewSet):
    """A variable's value in one environment. Writing needs change_environment_config there
    (and manage_environment while the environment is locked)."""

    queryset = VariableOverride.objects.none()
    serializer_class = OverrideSerializer
    filterset_class = OverrideFilter
    ordering_fields = ["created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.overrides_for(self.request.user)

    @extend_schema(request=OverrideCreateSerializer, responses={201: OverrideSerializer})
    def create(self, request):
        data = OverrideCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        variable = fields["variable"]
        environment = Environment.objects.filter(organization=variable.organization, slug=fields["environment"]).first()
        if environment is None:
            raise field_error("environment", f"No environment '{fields['environment']}' in this organization.")
        secret = secret_named(variable.organization, fields.get("secret"), "secret")
        override = services.variable_override_set(
            actor=request.user, variable=variable, environment=environment, value=fields.get("value"), secret=secret
        )
        return Response(OverrideSerializer(override).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=OverrideUpdateSerializer, responses=OverrideSerializer)
    def partial_update(self, request, pk=None):
        data = OverrideUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            override = self.locked_object()
            fields = dict(data.validated_data)
            secret = (
                secret_named(override.variable.organization, fields["secret"], "secret")
                if "secret" in fields
                else override.secret
            )
            override = services.variable_override_set(
                actor=request.user,
                variable=override.variable,
                environment=override.environment,
                value=fields.get("value", override.value if "secret" not in fields else None),
                secret=secret,
            )
        override = self.get_queryset().get(pk=override.pk)
        return self.with_etag(Response(OverrideSerializer(override).data), override)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.variable_override_delete(actor=request.user, override=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
