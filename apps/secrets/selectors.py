"""Permission-filtered reads for secrets (metadata only; values never leave the services)."""

from django.db.models import QuerySet

from apps.tenancy.permissions import api_key_of, member_organization_ids

from .models import Secret


def secrets_for(user) -> QuerySet[Secret]:
    qs = Secret.objects.select_related("organization").prefetch_related("allowed_environments")
    if not user.is_authenticated:
        return qs.none()
    if user.is_superuser and api_key_of(user) is None:
        return qs
    return qs.filter(organization_id__in=member_organization_ids(user))
