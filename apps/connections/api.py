"""API for connection roles and per-environment bindings (ETag/If-Match on updates)."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import StrictSerializer, VisibleRelatedField
from apps.core.viewsets import ETagServiceViewSet
from apps.environments.api import environment_reference
from apps.environments.models import Kind
from apps.pipelines.models import Project
from apps.secrets.api import secret_reference, secret_shown
from apps.tenancy.api import MemberOrganizationField

from . import selectors, services
from .models import ConnectionBinding, ConnectionKind, ConnectionRole, ConnectionTest


class RoleSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)

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


class RoleFilter(filters.FilterSet):
    organization = filters.CharFilter(field_name="organization__slug")

    class Meta:
        model = ConnectionRole
        fields = ["organization", "project", "kind", "name"]


class ConnectionRoleViewSet(ETagServiceViewSet):
    """Logical connections that pipeline graphs refer to by name."""

    serializer_class = RoleSerializer
    create_serializer_class = RoleCreateSerializer
    update_serializer_class = RoleUpdateSerializer
    filterset_class = RoleFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    visible = selectors.roles_for
    create_service = services.connection_role_create
    update_service = services.connection_role_update
    delete_service = services.connection_role_delete
    service_instance = "role"


class BindingSerializer(serializers.ModelSerializer):
    role_name = serializers.CharField(source="role.name", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    credential = secret_shown("credential")

    class Meta:
        model = ConnectionBinding
        fields = ["id", "role", "role_name", "environment", "params", "credential", "created_at", "updated_at"]
        read_only_fields = fields


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


class BindingFilter(filters.FilterSet):
    environment = filters.CharFilter(field_name="environment__slug")
    organization = filters.CharFilter(field_name="environment__organization__slug")

    class Meta:
        model = ConnectionBinding
        fields = ["role", "environment", "organization"]


class ConnectionBindingViewSet(ETagServiceViewSet):
    """Where a role points in one environment. Credentials are secret references, never params."""

    serializer_class = BindingSerializer
    create_serializer_class = BindingCreateSerializer
    update_serializer_class = BindingUpdateSerializer
    filterset_class = BindingFilter
    ordering_fields = ["created_at", "updated_at"]
    visible = selectors.bindings_for
    delete_service = services.connection_binding_delete
    service_instance = "binding"
    organization_through = "role"
    reread = ("partial_update",)

    def create_object(self, fields):
        return services.connection_binding_set(actor=self.request.user, **{"credential": None, **fields})

    def update_object(self, binding, fields):
        fields = {"params": binding.params, "credential": binding.credential, **fields}
        return services.connection_binding_set(
            actor=self.request.user, role=binding.role, environment=binding.environment, **fields
        )

    @extend_schema(request=None, responses={202: ConnectionTestSerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Queue a real reachability check (postgres, sqlite, http); poll the returned test."""
        connection_test = services.connection_test_request(actor=request.user, binding=self.get_object())
        return Response(ConnectionTestSerializer(connection_test).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(responses=ConnectionTestSerializer(many=True))
    @action(detail=True, methods=["get"], pagination_class=None, filter_backends=[])  # the last 20, unpaged
    def tests(self, request, pk=None):
        binding = self.get_object()
        return Response(ConnectionTestSerializer(binding.tests.all()[:20], many=True).data)
