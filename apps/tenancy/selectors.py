"""Permission-filtered reads for tenancy."""

from django.db.models import QuerySet

from .models import ApiKey, Membership, Organization, ServiceAccount


def organizations_for(user) -> QuerySet[Organization]:
    """Organizations the user belongs to; platform operators see every organization."""
    return Organization.objects.restrict(user)


def memberships_for(user) -> QuerySet[Membership]:
    return Membership.objects.restrict(user).select_related("organization", "user")


def service_accounts_for(user) -> QuerySet[ServiceAccount]:
    return ServiceAccount.objects.restrict(user).select_related("organization", "user", "created_by")


def api_keys_for(user) -> QuerySet[ApiKey]:
    """A user's own keys, plus every key of the organizations they administer."""
    return ApiKey.objects.restrict(user).select_related("organization", "owner", "created_by")
