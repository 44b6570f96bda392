"""API for secrets. Values are write-only: responses carry a fingerprint, never the value."""

from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.response import Response

from apps.core.api import ETagMixin, StrictSerializer
from apps.environments.models import Environment
from apps.tenancy.api import MemberOrganizationField

from . import selectors, services
from .models import Secret


class SecretSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    allowed_environments = serializers.SlugRelatedField(slug_field="slug", many=True, read_only=True)
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


class SecretCreateSerializer(StrictSerializer):
    organization = MemberOrganizationField()
    name = serializers.CharField(max_length=64)
    provider = serializers.CharField(max_length=32, default="local")
    value = serializers.CharField(max_length=65536, required=False, write_only=True, trim_whitespace=False)
    reference = serializers.CharField(max_length=500, required=False, default="")
    allowed_environments = serializers.ListField(
        child=serializers.SlugField(max_length=63), required=False, default=list
    )
    description = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class SecretUpdateSerializer(StrictSerializer):
    value = serializers.CharField(max_length=65536, required=False, write_only=True, trim_whitespace=False)
    reference = serializers.CharField(max_length=500, required=False)
    allowed_environments = serializers.ListField(child=serializers.SlugField(max_length=63), required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


def environments_by_slug(organization, slugs, field="allowed_environments"):
    from apps.core.errors import field_error

    found = {e.slug: e for e in Environment.objects.filter(organization=organization, slug__in=slugs)}
    missing = [s for s in slugs if s not in found]
    if missing:
        raise field_error(field, f"Unknown environment(s): {', '.join(missing)}.")
    return [found[s] for s in slugs]


class SecretFilter(filters.FilterSet):
    organization = filters.CharFilter(field_name="organization__slug")

    class Meta:
        model = Secret
        fields = ["organization", "provider", "name"]


class SecretViewSet(ETagMixin, viewsets.ModelViewSet):
    """Credential references. Members see metadata; owners and admins create, rotate and delete."""

    queryset = Secret.objects.none()
    serializer_class = SecretSerializer
    filterset_class = SecretFilter
    search_fields = ["name", "description"]
    ordering_fields = ["name", "created_at", "rotated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    required_scopes = {"create": "admin", "partial_update": "admin", "destroy": "admin"}

    def get_queryset(self):
        return selectors.secrets_for(self.request.user)

    @extend_schema(request=SecretCreateSerializer, responses={201: SecretSerializer})
    def create(self, request):
        data = SecretCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        fields["allowed_environments"] = environments_by_slug(fields["organization"], fields["allowed_environments"])
        secret = services.secret_create(actor=request.user, **fields)
        return Response(SecretSerializer(secret).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=SecretUpdateSerializer, responses=SecretSerializer)
    def partial_update(self, request, pk=None):
        data = SecretUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            secret = self.locked_object()
            fields = dict(data.validated_data)
            if "allowed_environments" in fields:
                fields["allowed_environments"] = environments_by_slug(
                    secret.organization, fields["allowed_environments"]
                )
            secret = services.secret_update(actor=request.user, secret=secret, **fields)
        secret = self.get_queryset().get(pk=secret.pk)
        return self.with_etag(Response(SecretSerializer(secret).data), secret)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.secret_delete(actor=request.user, secret=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
