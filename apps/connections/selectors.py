"""Permission-filtered reads for connection roles and bindings."""

from django.db.models import QuerySet

from .models import ConnectionBinding, ConnectionRole


def roles_for(user) -> QuerySet[ConnectionRole]:
    return ConnectionRole.objects.restrict(user).select_related("organization", "project")


def bindings_for(user) -> QuerySet[ConnectionBinding]:
    """Bindings in the environments the user may view."""
    return ConnectionBinding.objects.restrict(user).select_related("role", "environment", "credential")
