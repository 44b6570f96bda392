"""Permission-filtered reads for tenancy."""

from django.contrib.auth import get_user_model
from django.db.models import QuerySet

from .models import ApiKey, Membership, Organization, ServiceAccount
from .permissions import is_platform_operator


def organizations_for(user) -> QuerySet[Organization]:
    """Organizations the user belongs to; platform operators see every organization (to run the platform)."""
    return Organization.objects.all() if is_platform_operator(user) else Organization.objects.restrict(user)


def memberships_for(user) -> QuerySet[Membership]:
    return Membership.objects.restrict(user).select_related("organization", "user")


def service_accounts_for(user) -> QuerySet[ServiceAccount]:
    return ServiceAccount.objects.restrict(user).select_related("organization", "user", "created_by")


def api_keys_for(user) -> QuerySet[ApiKey]:
    """A user's own keys, plus every key of the organizations they administer."""
    return ApiKey.objects.restrict(user).select_related("organization", "owner", "created_by")


def members_of(organization) -> QuerySet:
    """The organization's member users: where a body names a user by username, only these are found,
    so an unknown username and one of another organization get the same answer (no oracle)."""
    return get_user_model().objects.filter(memberships__organization=organization)
