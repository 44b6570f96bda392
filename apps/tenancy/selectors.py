"""Permission-filtered reads for tenancy."""

from django.db.models import Q, QuerySet

from .models import ApiKey, Membership, Organization, ServiceAccount
from .permissions import admin_organization_ids, api_key_of, is_platform_operator, member_organization_ids


def _visible_org_ids(user):
    if user.is_superuser and api_key_of(user) is None:
        return None  # all
    return member_organization_ids(user)


def organizations_for(user) -> QuerySet[Organization]:
    """Organizations the user belongs to; platform operators see every organization."""
    ids = None if is_platform_operator(user) else _visible_org_ids(user)
    qs = Organization.objects.all()
    return qs if ids is None else qs.filter(pk__in=ids)


def memberships_for(user) -> QuerySet[Membership]:
    ids = _visible_org_ids(user)
    qs = Membership.objects.select_related("organization", "user")
    return qs if ids is None else qs.filter(organization_id__in=ids)


def service_accounts_for(user) -> QuerySet[ServiceAccount]:
    ids = _visible_org_ids(user)
    qs = ServiceAccount.objects.select_related("organization", "user", "created_by")
    return qs if ids is None else qs.filter(organization_id__in=ids)


def api_keys_for(user) -> QuerySet[ApiKey]:
    """A user's own keys, plus every key of the organizations they administer."""
    qs = ApiKey.objects.select_related("organization", "owner", "created_by")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser and api_key_of(user) is None:
        return qs
    own = Q(owner=user, organization_id__in=member_organization_ids(user))
    return qs.filter(own | Q(organization_id__in=admin_organization_ids(user)))
