"""`restrict(user, codename)` for environment-scoped models, built on the permission door
(apps/environments/permissions.py) as tenancy's organization-scoped querysets are built on
apps/tenancy/permissions.py."""

from django.db import models
from django.db.models import Q


def _codenames(action) -> tuple[str, ...]:
    from . import permissions as perms

    if action is None:
        return (perms.VIEW,)
    return (action,) if isinstance(action, str) else tuple(action)


class EnvironmentQuerySet(models.QuerySet):
    """Environments: those in which the user holds `action` (a codename, or any of several)."""

    def restrict(self, user, action: str | tuple[str, ...] | None = None):
        from . import permissions as perms

        codenames = _codenames(action)
        if len(codenames) == 1:
            return perms.environments_where(user, codenames[0], self)
        condition = Q(pk__in=[])
        for codename in codenames:
            condition |= Q(pk__in=perms.environments_where(user, codename).values("pk"))
        return self.filter(condition)

    def in_organization(self, organization):
        return self.filter(organization=organization)

    def administered_by(self, user):
        """Environments of the organizations `user` administers (owner or admin)."""
        from apps.tenancy.models import Organization

        return self.filter(organization__in=Organization.objects.restrict(user, "admin"))


class EnvScopedQuerySet(models.QuerySet):
    """Rows of one environment (through `environment_path`): visible where the user holds the
    codename `action` there (default view_environment), or any of several codenames."""

    environment_path = "environment"

    def restrict(self, user, action: str | tuple[str, ...] | None = None):
        from apps.tenancy.permissions import sees_all

        from .models import Environment

        if sees_all(user):
            return self
        environments = Environment.objects.restrict(user, _codenames(action)).values("pk")
        return self.filter(**{f"{self.environment_path}__in": environments})

    def in_organization(self, organization):
        return self.filter(**{f"{self.environment_path}__organization": organization})


class GrantQuerySet(EnvScopedQuerySet):
    """Object-permission rows of an environment: only those who manage it see its grants."""

    environment_path = "content_object"

    def restrict(self, user, action: str | tuple[str, ...] | None = None):
        from . import permissions as perms

        return super().restrict(user, action or perms.MANAGE)
