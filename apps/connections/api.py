"""API for connection roles and per-environment bindings (ETag/If-Match on updates)."""

from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import ETagMixin, StrictSerializer, VisibleRelatedField
from apps.core.errors import field_error
from apps.environments.models import Environment, Kind
from apps.pipelines.models import Project
from apps.secrets.selectors import secret_named
from apps.tenancy.api import MemberOrganizationField

from . import selectors, services
from .models import ConnectionBinding, ConnectionKind, ConnectionRole, ConnectionTest


def _secret(organization, name):
    return secret_named(organization, name, "credential")


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


class ConnectionRoleViewSet(ETagMixin, viewsets.ModelViewSet):
    """Logical connections that pipeline graphs refer to by name."""

    queryset = ConnectionRole.objects.none()
    serializer_class = RoleSerializer
    filterset_class = RoleFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.roles_for(self.request.user)

    @extend_schema(request=RoleCreateSerializer, responses={201: RoleSerializer})
    def create(self, request):
        data = RoleCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        role = services.connection_role_create(actor=request.user, **fields)
        return Response(RoleSerializer(role).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RoleUpdateSerializer, responses=RoleSerializer)
    def partial_update(self, request, pk=None):
        data = RoleUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            role = services.connection_role_update(actor=request.user, role=self.locked_object(), **data.validated_data)
        return self.with_etag(Response(RoleSerializer(role).data), role)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.connection_role_delete(actor=request.user, role=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class BindingSerializer(serializers.ModelSerializer):
    role_name = serializers.CharField(source="role.name", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    credential = serializers.SerializerMethodField()

    class Meta:
        model = ConnectionBinding
        fields = ["id", "role", "role_name", "environment", "params", "credential", "created_at", "updated_at"]
        read_only_fields = fields

    def get_credential(self, obj) -> str | None:
        return obj.credential.display_reference if obj.credential else None


class BindingCreateSerializer(StrictSerializer):
    role = VisibleRelatedField(ConnectionRole)
    environment = serializers.SlugField(max_length=63)
    params = serializers.DictField()
    credential = serializers.CharField(max_length=64, required=False, allow_null=True)


class BindingUpdateSerializer(StrictSerializer):
    params = serializers.DictField(required=False)
    credential = serializers.CharField(max_length=64, required=False, allow_null=True)


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


class ConnectionBindingViewSet(ETagMixin, viewsets.ModelViewSet):
    """Where a role points in one environment. Credentials are secret references, never params."""

    queryset = ConnectionBinding.objects.none()
    serializer_class = BindingSerializer
    filterset_class = BindingFilter
    ordering_fields = ["created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.bindings_for(self.request.user)

    @extend_schema(request=BindingCreateSerializer, responses={201: BindingSerializer})
    def create(self, request):
        data = BindingCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        role = fields["role"]
        environment = Environment.objects.filter(organization=role.organization, slug=fields["environment"]).first()
        if environment is None:
            raise field_error("environment", f"No environment '{fields['environment']}' in this organization.")
        binding = services.connection_binding_set(
            actor=request.user,
            role=role,
            environment=environment,
            params=fields["params"],
            credential=_secret(role.organization, fields.get("credential")),
        )
        return Response(BindingSerializer(binding).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=BindingUpdateSerializer, responses=BindingSerializer)
    def partial_update(self, request, pk=None):
        data = BindingUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            binding = self.locked_object()
            fields = dict(data.validated_data)
            credential = (
                _secret(binding.role.organization, fields["credential"])
                if "credential" in fields
                else binding.credential
            )
            binding = services.connection_binding_set(
                actor=request.user,
                role=binding.role,
                environment=binding.environment,
                params=fields.get("params", binding.params),
                credential=credential,
            )
        binding = self.get_queryset().get(pk=binding.pk)
        return self.with_etag(Response(BindingSerializer(binding).data), binding)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.connection_binding_delete(actor=request.user, binding=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

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
