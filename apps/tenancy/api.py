"""API for organizations, memberships, service accounts and API keys."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from apps.core.api import ADMIN_WRITES, SCOPES, StrictModelSerializer, StrictSerializer
from apps.core.filtersets import organization_filterset
from apps.core.types import User
from apps.core.viewsets import ServiceFamily, ServiceViewSet

from . import selectors, services
from .models import ApiKey, Membership, Organization, Role, ServiceAccount
from .permissions import org_role


class UserSummarySerializer(serializers.ModelSerializer):
    email = serializers.CharField(read_only=True, help_text="Empty for service accounts.")

    class Meta:
        model = User
        fields = ["id", "username", "email"]
        read_only_fields = fields


class MemberOrganizationField(serializers.SlugRelatedField):
    """An organization by slug, among those the caller belongs to: another organization's slug is
    answered exactly like an unknown one, so slugs cannot be probed."""

    def __init__(self, **kwargs):
        super().__init__(slug_field="slug", queryset=Organization.objects.all(), **kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        if request is None:
            return Organization.objects.none()
        return selectors.organizations_for(request.user)


def organization_shown() -> serializers.SlugRelatedField:
    """How a response shows the organization a row belongs to: its slug."""
    return serializers.SlugRelatedField(slug_field="slug", read_only=True)


def user_shown(**kwargs) -> serializers.SlugRelatedField:
    """How a response shows a user a row names (an author, an owner): the username."""
    return serializers.SlugRelatedField(slug_field="username", read_only=True, **kwargs)


# --- organizations --------------------------------------------------------------------------


class OrganizationSerializer(serializers.ModelSerializer):
    my_role = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = ["id", *services.ORGANIZATION_FIELDS, "my_role", "created_at"]
        read_only_fields = fields

    def get_my_role(self, obj) -> str | None:
        return org_role(self.context["request"].user, obj)


class OrganizationCreateSerializer(StrictModelSerializer):
    class Meta:
        model = Organization
        fields = services.ORGANIZATION_FIELDS
        extra_kwargs = {"slug": {"required": False}}

    def get_validators(self):  # uniqueness is the service's business (409 with a clear message)
        return []


class OrganizationUpdateSerializer(StrictModelSerializer):
    class Meta:
        model = Organization
        fields = [f for f in services.ORGANIZATION_FIELDS if f != "slug"]  # the slug never changes

    def get_validators(self):
        return []


class OrganizationFilter(filters.FilterSet):
    class Meta:
        model = Organization
        fields = ["slug", "edition"]


class OrganizationViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Organizations you belong to. Creating one, or changing its edition or limit, is for staff."""

    queryset = Organization.objects.none()
    serializer_class = OrganizationSerializer
    filterset_class = OrganizationFilter
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "created_at"]
    required_scopes = {"create": "admin", "update": "admin", "partial_update": "admin"}

    def get_queryset(self):
        return selectors.organizations_for(self.request.user)

    @extend_schema(request=OrganizationCreateSerializer, responses={201: OrganizationSerializer})
    def create(self, request):
        data = OrganizationCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        org = services.organization_create(actor=request.user, **data.validated_data)
        return Response(OrganizationSerializer(org, context={"request": request}).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=OrganizationUpdateSerializer, responses=OrganizationSerializer)
    def update(self, request, pk=None, partial=False):
        org = self.get_object()
        data = OrganizationUpdateSerializer(org, data=request.data, partial=partial)
        data.is_valid(raise_exception=True)
        org = services.organization_update(actor=request.user, organization=org, **data.validated_data)
        return Response(OrganizationSerializer(org, context={"request": request}).data)

    @extend_schema(request=OrganizationUpdateSerializer, responses=OrganizationSerializer)
    def partial_update(self, request, pk=None):
        return self.update(request, pk, partial=True)


# --- memberships ----------------------------------------------------------------------------


class MembershipSerializer(serializers.ModelSerializer):
    user = UserSummarySerializer(read_only=True)
    organization = organization_shown()

    class Meta:
        model = Membership
        fields = ["id", "organization", "user", "role", "created_at"]
        read_only_fields = fields


class MembershipCreateSerializer(StrictSerializer):
    organization = MemberOrganizationField()
    username = serializers.SlugRelatedField(
        slug_field="username", queryset=User.objects.filter(is_active=True), source="user"
    )
    role = serializers.ChoiceField(choices=Role.choices, default=Role.MEMBER)


class MembershipUpdateSerializer(StrictSerializer):
    role = serializers.ChoiceField(choices=Role.choices)


class MembershipViewSet(ServiceViewSet):
    """Who belongs to your organizations. Owners and admins add, change and remove members."""

    serializer_class = MembershipSerializer
    create_serializer_class = MembershipCreateSerializer
    update_serializer_class = MembershipUpdateSerializer
    filterset_class = organization_filterset(
        Membership, ["organization", "role", "username"], username="user__username"
    )
    ordering_fields = ["created_at", "role"]
    required_scopes = ADMIN_WRITES
    visible = selectors.memberships_for
    writes = ServiceFamily(
        "membership",
        create=services.membership_add,
        update=services.membership_change_role,
        delete=services.membership_remove,
    )


# --- service accounts -----------------------------------------------------------------------


class ServiceAccountSerializer(serializers.ModelSerializer):
    organization = organization_shown()
    user = UserSummarySerializer(read_only=True)

    class Meta:
        model = ServiceAccount
        fields = ["id", "organization", "name", "description", "user", "created_at"]
        read_only_fields = fields


# What a service account and an API key are created with first: the organization and a name.
# (No docstring: the schema shows StrictSerializer's as the description of both.)
class _NamedInOrganization(StrictSerializer):
    organization = MemberOrganizationField()
    name = serializers.CharField(max_length=80)


class ServiceAccountCreateSerializer(_NamedInOrganization):
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ServiceAccountViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Non-human members (CI, external executors) that own API keys."""

    queryset = ServiceAccount.objects.none()
    serializer_class = ServiceAccountSerializer
    filterset_fields = ["organization__slug"]
    required_scopes = {"create": "admin"}

    def get_queryset(self):
        return selectors.service_accounts_for(self.request.user)

    @extend_schema(request=ServiceAccountCreateSerializer, responses={201: ServiceAccountSerializer})
    def create(self, request):
        data = ServiceAccountCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        account = services.service_account_create(actor=request.user, **data.validated_data)
        return Response(ServiceAccountSerializer(account).data, status=status.HTTP_201_CREATED)


# --- API keys -------------------------------------------------------------------------------


class ApiKeySerializer(serializers.ModelSerializer):
    organization = organization_shown()
    owner = UserSummarySerializer(read_only=True)
    is_active = serializers.BooleanField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id",
            "organization",
            "owner",
            "name",
            "prefix",
            "scopes",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "is_active",
            "created_at",
        ]
        read_only_fields = fields


class ApiKeyCreateSerializer(_NamedInOrganization):
    scopes = serializers.ListField(child=serializers.ChoiceField(choices=SCOPES), min_length=1, max_length=4)
    owner = serializers.CharField(
        max_length=150,
        required=False,
        help_text="Username of the owner (yourself by default; a service account's user for machine keys).",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)

    def validate(self, attrs):
        if "owner" in attrs:  # looked up among the organization's members only (selectors.members_of)
            username = attrs["owner"]
            attrs["owner"] = (
                selectors.members_of(attrs["organization"]).filter(username=username, is_active=True).first()
            )
            if attrs["owner"] is None:
                raise serializers.ValidationError({"owner": [f"No member of this organization is named {username}."]})
        return attrs


class ApiKeyViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """API keys. The secret token is returned once, by create; only a hash is stored."""

    queryset = ApiKey.objects.none()
    serializer_class = ApiKeySerializer
    filterset_class = organization_filterset(
        ApiKey,
        ["organization", "owner", "active"],
        owner="owner__username",
        active=filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull"),
    )
    ordering_fields = ["created_at", "last_used_at", "name"]
    required_scopes = {"create": "admin", "destroy": "admin"}

    def get_queryset(self):
        return selectors.api_keys_for(self.request.user)

    @extend_schema(
        request=ApiKeyCreateSerializer,
        responses={
            201: inline_serializer(
                "ApiKeyCreated",
                {"key": ApiKeySerializer(), "token": serializers.CharField(help_text="Shown once; store it now.")},
            )
        },
    )
    def create(self, request):
        data = ApiKeyCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        key, token = services.api_key_create(actor=request.user, **data.validated_data)
        return Response({"key": ApiKeySerializer(key).data, "token": token}, status=status.HTTP_201_CREATED)

    @extend_schema(responses={204: None})
    def destroy(self, request, pk=None):
        """Revoke the key (it stays listed, inactive, for the audit trail)."""
        services.api_key_revoke(actor=request.user, key=self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
