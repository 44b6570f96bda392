"""Permission-filtered reads for notifications."""

from django.db.models import QuerySet

from .models import Channel, Delivery, Notification


def channels_for(user) -> QuerySet[Channel]:
    """Channels of the organizations the user belongs to."""
    return Channel.objects.restrict(user).select_related("organization")


def deliveries_for(user) -> QuerySet[Delivery]:
    """Deliveries of the organizations the user administers."""
    return Delivery.objects.restrict(user).select_related("organization", "channel", "recipient")


def inbox_of(user) -> QuerySet[Notification]:
    """The user's in-app notifications (through an API key: only the key's organization)."""
    return Notification.objects.restrict(user).select_related("organization")
