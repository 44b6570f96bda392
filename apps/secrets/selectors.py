"""Permission-filtered reads for secrets (metadata only; values never leave the services)."""

from django.db.models import QuerySet

from .models import Secret


def secrets_for(user) -> QuerySet[Secret]:
    return Secret.objects.restrict(user).select_related("organization").prefetch_related("allowed_environments")


def secret_named(organization, name: str | None, field: str) -> Secret | None:
    """The organization's secret called `name` (None for None), or a 400 naming `field`: how every
    API body names a credential."""
    from apps.core.errors import field_error

    if name is None:
        return None
    secret = Secret.objects.filter(organization=organization, name=name).first()
    if secret is None:
        raise field_error(field, f"No secret named '{name}' in this organization.")
    return secret
