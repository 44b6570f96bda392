"""API for the caller's own personal overrides (development environments only): only the caller's rows
are ever listed or reachable; another member's id is a missing id."""

from rest_framework import serializers

from apps.core.api import StrictSerializer, VisibleRelatedField
from apps.core.filtersets import declared_filterset
from apps.core.viewsets import service_family
from apps.environments import permissions as perms
from apps.environments.api import environment_reference, environment_row_serializer
from apps.secrets.api import secret_reference, secret_shown

from . import selectors, services
from .api import OverrideViewSet
from .models import PersonalOverride, Variable


class PersonalOverrideSerializer(environment_row_serializer(PersonalOverride, "variable", "value", "secret")):  # type: ignore[misc]  # a base built per model
    secret = secret_shown("secret")


class PersonalOverrideCreateSerializer(StrictSerializer):
    variable = VisibleRelatedField(Variable)
    environment = environment_reference(action=perms.VIEW, help_text="A development environment's slug.")
    value = serializers.JSONField(required=False, allow_null=True)
    secret = secret_reference(required=False, allow_null=True, help_text="For a secret variable: the secret's name.")


class PersonalOverrideUpdateSerializer(StrictSerializer):
    value = serializers.JSONField(required=False, allow_null=True)
    secret = secret_reference(required=False, allow_null=True)


class PersonalOverrideViewSet(OverrideViewSet):
    """Your own value for a variable in a development environment: it applies only to the runs and
    previews you start and to your resolves (provenance `personal`), never to anyone else's, and
    never outside development."""

    serializer_class = PersonalOverrideSerializer
    create_serializer_class = PersonalOverrideCreateSerializer
    update_serializer_class = PersonalOverrideUpdateSerializer
    filterset_class = declared_filterset(PersonalOverride, ["variable", "environment"], environment="environment__slug")
    visible = selectors.personal_overrides_of
    writes = service_family(services, "personal_override", "set", "delete", instance="override")
