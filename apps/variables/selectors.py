"""Permission-filtered reads for variables and overrides."""

from django.db.models import QuerySet

from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.tenancy.permissions import api_key_of, member_organization_ids

from .models import Variable, VariableOverride


def variables_for(user) -> QuerySet[Variable]:
    qs = Variable.objects.select_related("organization", "project", "pipeline", "default_secret")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser and api_key_of(user) is None:
        return qs
    return qs.filter(organization_id__in=member_organization_ids(user))


def overrides_for(user) -> QuerySet[VariableOverride]:
    """Overrides in the environments the user may view."""
    qs = VariableOverride.objects.select_related("variable", "environment", "secret")
    if not user.is_authenticated:
        return qs.none()
    return qs.filter(environment__in=perms.environments_where(user, perms.VIEW, Environment.objects.all()))
