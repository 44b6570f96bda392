"""The configuration revision of an organization (see ConfigRevision)."""

from django.db import transaction
from django.db.models import F

from .models import ConfigRevision


def bump(organization_id: int) -> None:
    """Advance the organization's configuration revision; call inside the writing transaction."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("bump() must run inside the transaction that writes the configuration")
    updated = ConfigRevision.objects.filter(organization_id=organization_id).update(value=F("value") + 1)
    if not updated:
        _, created = ConfigRevision.objects.get_or_create(organization_id=organization_id, defaults={"value": 1})
        if not created:  # a concurrent first bump created the row: still advance past it
            ConfigRevision.objects.filter(organization_id=organization_id).update(value=F("value") + 1)


def current(organization_id: int) -> int:
    return ConfigRevision.objects.filter(organization_id=organization_id).values_list("value", flat=True).first() or 0
