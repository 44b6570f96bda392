"""API for the caller's own personal overrides (development environments only): only the caller's rows
are ever listed or reachable; another member's id is a missing id."""

from django_filters import rest_framework as filters
from rest_framework import serializers

from apps.core.api import StrictSerializer, VisibleRelatedField
from apps.core.viewsets import ServiceFamily
from apps.environments import permissions as perms
from apps.environments.api import environment_reference, environment_shown
from apps.secrets.api import secret_reference, secret_shown

from . import selectors, services
from .api import OverrideViewSet
from .models import PersonalOverride, Variable


class PersonalOverrideSerializer(serializers.ModelSerializer):
    variable_name = serializers.CharField(source="variable.name", read_only=True)
    environment = environment_shown()
    secret = secret_shown("secret")

    class Meta:
        model = PersonalOverride
        fields = ["id", "variable", "variable_name", "environment", "value", "secret", "created_at", "updated_at"]
        read_only_fields = fields


class PersonalOverrideCreateSerializer(StrictSerializer):
    variable = VisibleRelatedField(Variable)
    environment = environment_reference(action=perms.VIEW, help_text="A development environment's slug.")
    value = serializers.JSONField(required=False, allow_null=True)
    secret = secret_reference(required=False, allow_null=True, help_text="For a secret variable: the secret's name.")


class PersonalOverrideUpdateSerializer(StrictSerializer):
    value = serializers.JSONField(required=False, allow_null=True)
    secret = secret_reference(required=False, allow_null=True)


class PersonalOverrideFilter(filters.FilterSet):
    environment = filters.CharFilter(field_name="environment__slug")

    class Meta:
        model = PersonalOverride
        fields = ["variable", "environment"]


class PersonalOverrideViewSet(OverrideViewSet):
    """Your own value for a variable in a development environment: it applies only to the runs and
    previews you start and to your resolves (provenance `personal`), never to anyone else's, and
    never outside development."""

    serializer_class = PersonalOverrideSerializer
    create_serializer_class = PersonalOverrideCreateSerializer
    update_serializer_class = PersonalOverrideUpdateSerializer
    filterset_class = PersonalOverrideFilter
    ordering_fields = ["created_at", "updated_at"]
    visible = selectors.personal_overrides_of
    writes = ServiceFamily("override", set=services.personal_override_set, delete=services.personal_override_delete)
