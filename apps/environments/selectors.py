"""Permission-filtered reads for environments."""

from django.db.models import Prefetch, QuerySet

from . import permissions as perms
from .models import Environment, FreezeWindow


def environments_visible_to(user) -> QuerySet[Environment]:
    """Environments the user may view, with what list and detail pages show prefetched."""
    return (
        Environment.objects.restrict(user, perms.VIEW)
        .select_related("organization", "promotes_to", "policy")
        .prefetch_related(
            "policy__notification_channels",
            Prefetch("freeze_windows", queryset=FreezeWindow.objects.order_by("starts_at", "id")),
        )
    )
