"""API for environments, their runtime policy, freeze windows and per-environment permissions."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import StrictModelSerializer, StrictSerializer, VisibleRelatedField
from apps.core.filtersets import organization_filterset
from apps.core.viewsets import OrganizationRelatedField, ServiceFamily, ServiceViewSet
from apps.notifications.models import Channel
from apps.tenancy import selectors as tenancy_selectors
from apps.tenancy.api import MemberOrganizationField, organization_shown
from apps.tenancy.models import Organization

from . import permissions as perms
from . import selectors, services
from .models import (
    ENVIRONMENT_SETTINGS,
    POLICY_SETTINGS,
    Environment,
    EnvironmentGroupObjectPermission,
    EnvironmentUserObjectPermission,
    FreezeWindow,
    RuntimePolicy,
)

User = get_user_model()


def environment_reference(**kwargs) -> OrganizationRelatedField:
    """An environment of the organization being written in, by slug (a 400 naming the field otherwise)."""
    kwargs.setdefault("max_length", 63)
    return OrganizationRelatedField(Environment, slug=True, **kwargs)


def environment_shown(**kwargs) -> serializers.SlugRelatedField:
    """How a response shows the environment a row refers to: its slug (`many=True` for a list)."""
    return serializers.SlugRelatedField(slug_field="slug", read_only=True, **kwargs)


def environment_row_serializer(model, definition: str, *values: str) -> type[serializers.ModelSerializer]:
    """The base of a response's definition row in one environment (a binding, an override): its id,
    the definition's id and name, the environment's slug, `values` (a subclass declares how a secret
    among them is shown), the times."""
    fields = ["id", definition, f"{definition}_name", "environment", *values, "created_at", "updated_at"]
    meta = type("Meta", (), {"model": model, "fields": fields, "read_only_fields": fields})
    declared = {f"{definition}_name": serializers.CharField(source=f"{definition}.name", read_only=True)}
    base = (serializers.ModelSerializer,)
    return type(f"{model.__name__}RowSerializer", base, {**declared, "environment": environment_shown(), "Meta": meta})


class RuntimePolicySerializer(serializers.ModelSerializer):
    notification_channels = serializers.PrimaryKeyRelatedField(many=True, read_only=True)

    class Meta:
        model = RuntimePolicy
        fields = [*POLICY_SETTINGS[:4], "notification_channels", *POLICY_SETTINGS[4:], "updated_at"]
        read_only_fields = fields


class RuntimePolicyWriteSerializer(StrictModelSerializer):
    notification_channels = VisibleRelatedField(Channel, many=True, required=False)
    allowed_destinations = serializers.ListField(
        child=serializers.CharField(max_length=100), max_length=200, required=False
    )

    class Meta:
        model = RuntimePolicy
        fields = [*POLICY_SETTINGS[:4], "notification_channels", *POLICY_SETTINGS[4:]]


class FreezeWindowSerializer(serializers.ModelSerializer):
    class Meta:
        model = FreezeWindow
        fields = ["id", "kind", "starts_at", "ends_at", "cron", "duration_minutes", "timezone", "reason", "created_at"]
        read_only_fields = ["id", "created_at"]


class FreezeWindowWriteSerializer(StrictModelSerializer):
    class Meta:
        model = FreezeWindow
        fields = ["kind", "starts_at", "ends_at", "cron", "duration_minutes", "timezone", "reason"]


class EnvironmentSerializer(serializers.ModelSerializer):
    organization = organization_shown()
    promotes_to = environment_shown(allow_null=True)
    policy = RuntimePolicySerializer(read_only=True)
    freeze_windows = FreezeWindowSerializer(many=True, read_only=True)
    my_permissions = serializers.SerializerMethodField()

    class Meta:
        model = Environment
        fields = [
            "id",
            "organization",
            *ENVIRONMENT_SETTINGS,
            "policy",
            "freeze_windows",
            "my_permissions",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_my_permissions(self, obj) -> list[str]:
        return perms.held_codenames(self.context["request"].user, obj)


class _PromotesToField(serializers.SlugRelatedField):
    """An environment slug, looked up in the same organization as the environment being written."""

    def __init__(self, **kwargs):
        super().__init__(
            slug_field="slug", queryset=Environment.objects.all(), allow_null=True, required=False, **kwargs
        )

    def get_queryset(self):
        organization = self.parent.context.get("organization")
        return Environment.objects.filter(organization=organization)


class EnvironmentCreateSerializer(StrictModelSerializer):
    organization = MemberOrganizationField()
    promotes_to = _PromotesToField()
    policy = RuntimePolicyWriteSerializer(required=False)
    slug = serializers.SlugField(max_length=63, required=False)
    is_protected = serializers.BooleanField(required=False, allow_null=True, default=None)

    class Meta:
        model = Environment
        fields = [
            "organization",
            *ENVIRONMENT_SETTINGS,
            "policy",
        ]

    def get_validators(self):
        return []


class EnvironmentUpdateSerializer(StrictModelSerializer):
    promotes_to = _PromotesToField()

    class Meta:
        model = Environment
        fields = list(ENVIRONMENT_SETTINGS)

    def get_validators(self):
        return []


class MemberUsernameField(serializers.SlugRelatedField):
    """A username among the members of the organization in context["organization"]: an unknown
    user and a user of another organization get the same answer (no oracle of who exists)."""

    default_error_messages = {"does_not_exist": "No member of this organization is named {value}."}

    def get_queryset(self):
        return tenancy_selectors.members_of(self.context["organization"])


class PermissionGrantSerializer(StrictSerializer):
    codename = serializers.ChoiceField(choices=perms.CODENAMES)
    username = MemberUsernameField(slug_field="username", queryset=User.objects.all(), source="user", required=False)
    group = serializers.SlugRelatedField(slug_field="name", queryset=Group.objects.all(), required=False)


class PermissionGrantListSerializer(serializers.Serializer):
    users = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))
    groups = serializers.DictField(child=serializers.ListField(child=serializers.CharField()))


class EnvironmentViewSet(ServiceViewSet):
    """Stages of the promotion path, with their runtime policy and freeze windows nested.

    Lists show only environments you may view; changes need the matching per-environment permission."""

    serializer_class = EnvironmentSerializer
    create_serializer_class = EnvironmentCreateSerializer
    update_serializer_class = EnvironmentUpdateSerializer
    filterset_class = organization_filterset(Environment, ["organization", "kind", "slug", "is_protected"])
    search_fields = ["name", "slug"]
    ordering_fields = ["position", "name", "created_at"]
    required_scopes = {"create": "admin", "destroy": "admin", "permissions": "admin"}
    visible = selectors.environments_visible_to
    writes = ServiceFamily("environment", update=services.environment_update, delete=services.environment_delete)

    def answer(self, environment):
        fresh = self.get_queryset().filter(pk=environment.pk).first() or environment
        return fresh, EnvironmentSerializer(fresh, context={"request": self.request}).data

    def _write_context(self, environment):
        return {"organization": environment.organization, "request": self.request}

    def input_serializer(self, serializer_class, environment=None):
        if environment is not None:
            context = self._write_context(environment)
            return serializer_class(environment, data=self.request.data, partial=True, context=context)
        organization = None
        slug = self.request.data.get("organization") if isinstance(self.request.data, dict) else None
        if isinstance(slug, str) and "\x00" not in slug:  # PostgreSQL refuses NUL; the serializer reports it
            organization = Organization.objects.restrict(self.request.user).filter(slug=slug).first()
        return serializer_class(data=self.request.data, context={"organization": organization, "request": self.request})

    def create_object(self, fields):
        return services.environment_create(actor=self.request.user, **{"policy": None, **fields})

    @extend_schema(methods=["GET"], responses=RuntimePolicySerializer)
    @extend_schema(methods=["PATCH"], request=RuntimePolicyWriteSerializer, responses=RuntimePolicySerializer)
    @action(detail=True, methods=["get", "patch"])
    def policy(self, request, pk=None):
        """The environment's runtime policy. Changing it needs change_environment_config; a locked
        policy (and the lock itself) needs manage_environment."""
        environment = self.get_object()
        if request.method == "GET":
            return Response(RuntimePolicySerializer(environment.policy).data)
        data = RuntimePolicyWriteSerializer(
            environment.policy,
            data=request.data,
            partial=True,
            context=self._write_context(environment),
        )
        data.is_valid(raise_exception=True)
        policy = services.runtime_policy_update(actor=request.user, environment=environment, **data.validated_data)
        return Response(RuntimePolicySerializer(policy).data)

    @extend_schema(methods=["GET"], responses=FreezeWindowSerializer(many=True))
    @extend_schema(methods=["POST"], request=FreezeWindowWriteSerializer, responses={201: FreezeWindowSerializer})
    @action(detail=True, methods=["get", "post"], url_path="freeze-windows", pagination_class=None, filter_backends=[])
    def freeze_windows(self, request, pk=None):
        """Freeze windows (deployments blocked inside). Adding one needs manage_environment."""
        environment = self.get_object()
        if request.method == "GET":
            return Response(FreezeWindowSerializer(environment.freeze_windows.all(), many=True).data)
        data = FreezeWindowWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        window = services.freeze_window_create(actor=request.user, environment=environment, **data.validated_data)
        return Response(FreezeWindowSerializer(window).data, status=status.HTTP_201_CREATED)

    @extend_schema(parameters=[OpenApiParameter("window_id", int, OpenApiParameter.PATH)], responses={204: None})
    @action(detail=True, methods=["delete"], url_path=r"freeze-windows/(?P<window_id>[0-9]+)")
    def freeze_window_delete(self, request, pk=None, window_id=None):
        environment = self.get_object()
        window = get_object_or_404(FreezeWindow, pk=window_id, environment=environment)
        services.freeze_window_delete(actor=request.user, window=window)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(methods=["GET"], responses=PermissionGrantListSerializer)
    @extend_schema(
        methods=["POST", "DELETE"], request=PermissionGrantSerializer, responses={200: PermissionGrantListSerializer}
    )
    @action(detail=True, methods=["get", "post", "delete"])
    def permissions(self, request, pk=None):
        """Per-environment grants. Granting and revoking need manage_environment (groups: org admin)."""
        environment = self.get_object()
        if request.method != "GET":
            data = PermissionGrantSerializer(data=request.data, context={"organization": environment.organization})
            data.is_valid(raise_exception=True)
            service = services.permission_grant if request.method == "POST" else services.permission_revoke
            service(actor=request.user, environment=environment, **data.validated_data)
        else:
            perms.require(request.user, perms.MANAGE, environment)
        return Response(_grants_of(environment))


def _grants_of(environment) -> dict:
    users: dict[str, list[str]] = {}
    for username, codename in EnvironmentUserObjectPermission.objects.filter(content_object=environment).values_list(
        "user__username", "permission__codename"
    ):
        users.setdefault(username, []).append(codename)
    groups: dict[str, list[str]] = {}
    for name, codename in EnvironmentGroupObjectPermission.objects.filter(content_object=environment).values_list(
        "group__name", "permission__codename"
    ):
        groups.setdefault(name, []).append(codename)
    return {"users": {k: sorted(v) for k, v in users.items()}, "groups": {k: sorted(v) for k, v in groups.items()}}
