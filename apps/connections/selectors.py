"""Permission-filtered reads for connection roles and bindings."""

from django.db.models import QuerySet

from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.tenancy.permissions import api_key_of, member_organization_ids

from .models import ConnectionBinding, ConnectionRole


def roles_for(user) -> QuerySet[ConnectionRole]:
    qs = ConnectionRole.objects.select_related("organization", "project")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser and api_key_of(user) is None:
        return qs
    return qs.filter(organization_id__in=member_organization_ids(user))


def bindings_for(user) -> QuerySet[ConnectionBinding]:
    """Bindings in the environments the user may view."""
    qs = ConnectionBinding.objects.select_related("role", "environment", "credential")
    if not user.is_authenticated:
        return qs.none()
    return qs.filter(environment__in=perms.environments_where(user, perms.VIEW, Environment.objects.all()))
