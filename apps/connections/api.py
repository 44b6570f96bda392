"""API for connection roles and per-environment bindings (ETag/If-Match on updates)."""

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import StrictSerializer, VisibleRelatedField
from apps.core.filtersets import organization_filterset
from apps.core.viewsets import ETagServiceViewSet, PerEnvironmentRowViewSet, queued_action, service_family
from apps.environments.api import environment_reference, environment_row_serializer
from apps.environments.models import Kind
from apps.pipelines.models import Project
from apps.secrets.api import secret_reference, secret_shown
from apps.tenancy.api import MemberOrganizationField, organization_shown

from . import selectors, services
from .models import ConnectionBinding, ConnectionKind, ConnectionRole, ConnectionTest


class RoleSerializer(serializers.ModelSerializer):
    organization = organization_shown()

    class Meta:
        model = ConnectionRole
        fields = [
            "id",
            "organization",
            "project",
            "name",
            "kind",
            "description",
            "required_in",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class RoleCreateSerializer(StrictSerializer):
    organization = MemberOrganizationField()
    project = VisibleRelatedField(Project, required=False, allow_null=True)
    name = serializers.CharField(max_length=64)
    kind = serializers.ChoiceField(choices=ConnectionKind.choices)
    description = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)
    required_in = serializers.ListField(
        child=serializers.ChoiceField(choices=Kind.choices), required=False, default=list
    )


class RoleUpdateSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=ConnectionKind.choices, required=False)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    required_in = serializers.ListField(child=serializers.ChoiceField(choices=Kind.choices), required=False)


class ConnectionRoleViewSet(ETagServiceViewSet):
    """Logical connections that pipeline graphs refer to by name."""

    serializer_class = RoleSerializer
    create_serializer_class = RoleCreateSerializer
    update_serializer_class = RoleUpdateSerializer
    filterset_class = organization_filterset(ConnectionRole, ["organization", "project", "kind", "name"])
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    visible = selectors.roles_for
    writes = service_family(services, "connection_role", instance="role")


class BindingSerializer(environment_row_serializer(ConnectionBinding, "role", "params", "credential")):  # type: ignore[misc]  # a base built per model
    credential = secret_shown("credential")


class BindingCreateSerializer(StrictSerializer):
    role = VisibleRelatedField(ConnectionRole)
    environment = environment_reference()
    params = serializers.DictField()
    credential = secret_reference(required=False, allow_null=True)


class BindingUpdateSerializer(StrictSerializer):
    params = serializers.DictField(required=False)
    credential = secret_reference(required=False, allow_null=True)


class ConnectionTestSerializer(serializers.ModelSerializer):
    class Meta:
        model = ConnectionTest
        fields = ["id", "binding", "status", "message", "created_at", "finished_at"]
        read_only_fields = fields


class ConnectionBindingViewSet(PerEnvironmentRowViewSet):
    """Where a role points in one environment. Credentials are secret references, never params."""

    serializer_class = BindingSerializer
    create_serializer_class = BindingCreateSerializer
    update_serializer_class = BindingUpdateSerializer
    visible = selectors.bindings_for
    writes = service_family(services, "connection_binding", "set", "delete", instance="binding")
    organization_through = "role"
    row_values = ("params", "credential")

    @queued_action(ConnectionTestSerializer)
    def test(self, request, pk=None):
        """Queue a real reachability check (postgres, sqlite, http); poll the returned test."""
        return services.connection_test_request(actor=request.user, binding=self.get_object())

    @extend_schema(responses=ConnectionTestSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])  # the last 20, unpaged
    def tests(self, request, pk=None):
        binding = self.get_object()
        return Response(ConnectionTestSerializer(binding.tests.all()[:20], many=True).data)
