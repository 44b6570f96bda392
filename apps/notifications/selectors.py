"""Permission-filtered reads for notifications."""

from django.db.models import QuerySet

from apps.tenancy.permissions import admin_organization_ids, api_key_of, member_organization_ids

from .models import Channel, Delivery, Notification


def channels_for(user) -> QuerySet[Channel]:
    """Channels of the organizations the user belongs to."""
    qs = Channel.objects.select_related("organization")
    if user.is_superuser and api_key_of(user) is None:
        return qs
    return qs.filter(organization_id__in=member_organization_ids(user))


def deliveries_for(user) -> QuerySet[Delivery]:
    qs = Delivery.objects.select_related("organization", "channel", "recipient")
    if user.is_superuser and api_key_of(user) is None:
        return qs
    return qs.filter(organization_id__in=admin_organization_ids(user))


def inbox_of(user) -> QuerySet[Notification]:
    """The user's in-app notifications (through an API key: only the key's organization)."""
    if not user.is_authenticated:
        return Notification.objects.none()
    qs = Notification.objects.filter(user=user).select_related("organization")
    key = api_key_of(user)
    return qs.filter(organization_id=key.organization_id) if key is not None else qs
