"""`restrict(user, action)` for organization-scoped models (NetBox's RestrictedQuerySet): every
list, related-field lookup, admin changelist and filter, screen and CLI starts from
`Model.objects.restrict(user, action)`, so a row the user may not see is simply not there.

The rule itself lives in apps/tenancy/permissions.py; environment-scoped models build on this in
apps/environments/querysets.py."""

from django.db import models
from django.db.models import Q


class OrgScopedQuerySet(models.QuerySet):
    """Rows that belong to one organization through `organization_path`."""

    organization_path = "organization"
    default_action = "view"

    def restrict(self, user, action: str | None = None):
        from . import permissions

        ids = permissions.organization_ids_where(user, action or self.default_action)
        if ids is None:
            return self
        return self.filter(**{f"{self.organization_path}__in": ids})

    def in_organization(self, organization):
        """Only the rows of `organization` (an instance or id)."""
        return self.filter(**{self.organization_path: getattr(organization, "pk", organization)})


class OrganizationQuerySet(OrgScopedQuerySet):
    """Organizations: members see theirs, owners and admins administer them."""

    organization_path = "pk"


class ApiKeyQuerySet(OrgScopedQuerySet):
    """A user's own keys (in organizations they still belong to), plus every key of the
    organizations they administer."""

    def restrict(self, user, action: str | None = None):
        from . import permissions

        if not getattr(user, "is_authenticated", False):
            return self.none()
        administered = permissions.organization_ids_where(user, permissions.ADMIN)
        if administered is None:
            return self
        own = Q(owner=user, organization_id__in=permissions.member_organization_ids(user))
        if (action or self.default_action) == permissions.ADMIN:
            return self.filter(organization_id__in=administered)
        return self.filter(own | Q(organization_id__in=administered))
