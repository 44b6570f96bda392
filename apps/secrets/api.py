"""API for secrets. Values are write-only: responses carry a fingerprint, never the value."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from apps.core.api import ADMIN_WRITES, StrictSerializer
from apps.core.filtersets import organization_filterset
from apps.core.viewsets import ETagServiceViewSet, OrganizationRelatedField, service_family
from apps.environments.api import environment_reference, environment_shown
from apps.tenancy.api import MemberOrganizationField, organization_shown

from . import selectors, services
from .models import Secret


def secret_reference(**kwargs) -> OrganizationRelatedField:
    """A secret of the organization being written in, by name: how every API body names a credential."""
    missing = "No secret named '{value}' in this organization."
    return OrganizationRelatedField(Secret, lookup="name", missing=missing, max_length=64, **kwargs)


@extend_schema_field({"type": "string", "nullable": True})
class _SecretShown(serializers.CharField):
    """A secret's reference URI, never its value; null for none."""


def secret_shown(source: str) -> serializers.CharField:
    """How a response shows the secret a row refers to (its reference URI, never its value)."""
    return _SecretShown(source=f"{source}.display_reference", read_only=True, allow_null=True)


class SecretSerializer(serializers.ModelSerializer):
    organization = organization_shown()
    allowed_environments = environment_shown(many=True)
    reference_uri = serializers.CharField(source="display_reference", read_only=True)

    class Meta:
        model = Secret
        fields = [
            "id",
            "organization",
            "name",
            "description",
            "provider",
            "reference",
            "reference_uri",
            "fingerprint",
            "rotated_at",
            "allowed_environments",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


def _allowed_environment() -> OrganizationRelatedField:
    return environment_reference(missing_many="Unknown environment(s): {values}.")


class SecretCreateSerializer(StrictSerializer):
    organization = MemberOrganizationField()
    name = serializers.CharField(max_length=64)
    provider = serializers.CharField(max_length=32, default="local")
    value = serializers.CharField(max_length=65536, required=False, write_only=True, trim_whitespace=False)
    reference = serializers.CharField(max_length=500, required=False, default="")
    allowed_environments = serializers.ListField(child=_allowed_environment(), required=False, default=list)
    description = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class SecretUpdateSerializer(StrictSerializer):
    value = serializers.CharField(max_length=65536, required=False, write_only=True, trim_whitespace=False)
    reference = serializers.CharField(max_length=500, required=False)
    allowed_environments = serializers.ListField(child=_allowed_environment(), required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class SecretViewSet(ETagServiceViewSet):
    """Credential references. Members see metadata; owners and admins create, rotate and delete."""

    serializer_class = SecretSerializer
    create_serializer_class = SecretCreateSerializer
    update_serializer_class = SecretUpdateSerializer
    filterset_class = organization_filterset(Secret, ["organization", "provider", "name"])
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "rotated_at"]
    required_scopes = ADMIN_WRITES
    visible = selectors.secrets_for
    writes = service_family(services, "secret")
    reread = ("partial_update",)
