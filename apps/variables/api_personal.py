"""API for the caller's own personal overrides (development environments only): only the caller's rows
are ever listed or reachable; another member's id is a missing id."""

from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from apps.core.api import ETagMixin, StrictSerializer, VisibleRelatedField
from apps.core.errors import field_error
from apps.environments.models import Environment
from apps.secrets.selectors import secret_named

from . import selectors, services
from .models import PersonalOverride, Variable


class PersonalOverrideSerializer(serializers.ModelSerializer):
    variable_name = serializers.CharField(source="variable.name", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    secret = serializers.SerializerMethodField()

    class Meta:
        model = PersonalOverride
        fields = ["id", "variable", "variable_name", "environment", "value", "secret", "created_at", "updated_at"]
        read_only_fields = fields

    def get_secret(self, obj) -> str | None:
        return obj.secret.display_reference if obj.secret else None


class PersonalOverrideCreateSerializer(StrictSerializer):
    variable = VisibleRelatedField(Variable)
    environment = serializers.SlugField(max_length=63, help_text="A development environment's slug.")
    value = serializers.JSONField(required=False, allow_null=True)
    secret = serializers.CharField(
        max_length=64, required=False, allow_null=True, help_text="For a secret variable: the secret's name."
    )


class PersonalOverrideUpdateSerializer(StrictSerializer):
    value = serializers.JSONField(required=False, allow_null=True)
    secret = serializers.CharField(max_length=64, required=False, allow_null=True)


class PersonalOverrideFilter(filters.FilterSet):
    environment = filters.CharFilter(field_name="environment__slug")

    class Meta:
        model = PersonalOverride
        fields = ["variable", "environment"]


class PersonalOverrideViewSet(ETagMixin, viewsets.ModelViewSet):
    """Your own value for a variable in a development environment: it applies only to the runs and
    previews you start and to your resolves (provenance `personal`), never to anyone else's, and
    never outside development."""

    queryset = PersonalOverride.objects.none()
    serializer_class = PersonalOverrideSerializer
    filterset_class = PersonalOverrideFilter
    ordering_fields = ["created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.personal_overrides_of(self.request.user)

    @extend_schema(request=PersonalOverrideCreateSerializer, responses={201: PersonalOverrideSerializer})
    def create(self, request):
        data = PersonalOverrideCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        variable = fields["variable"]
        environment = (
            Environment.objects.restrict(request.user)
            .filter(organization=variable.organization, slug=fields["environment"])
            .first()
        )
        if environment is None:
            raise field_error("environment", f"No environment '{fields['environment']}' in this organization.")
        secret = secret_named(variable.organization, fields.get("secret"), "secret")
        row = services.personal_override_set(
            actor=request.user, variable=variable, environment=environment, value=fields.get("value"), secret=secret
        )
        return Response(PersonalOverrideSerializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PersonalOverrideUpdateSerializer, responses=PersonalOverrideSerializer)
    def partial_update(self, request, pk=None):
        data = PersonalOverrideUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            row = self.locked_object()
            fields = dict(data.validated_data)
            secret = (
                secret_named(row.variable.organization, fields["secret"], "secret")
                if "secret" in fields
                else row.secret
            )
            row = services.personal_override_set(
                actor=request.user,
                variable=row.variable,
                environment=row.environment,
                value=fields.get("value", row.value if "secret" not in fields else None),
                secret=secret,
            )
        row = self.get_queryset().get(pk=row.pk)
        return self.with_etag(Response(PersonalOverrideSerializer(row).data), row)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.personal_override_delete(actor=request.user, override=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
