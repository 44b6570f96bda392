"""Permission-filtered reads for secrets (metadata only; values never leave the services)."""

from django.db.models import QuerySet

from .models import Secret


def secrets_for(user) -> QuerySet[Secret]:
    return Secret.objects.restrict(user).select_related("organization").prefetch_related("allowed_environments")
