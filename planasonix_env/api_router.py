"""The API v1 router: each app registers its viewsets here."""

from rest_framework.routers import DefaultRouter

from apps.environments.api import EnvironmentViewSet
from apps.notifications.api import ChannelViewSet, NotificationViewSet
from apps.tenancy.api import ApiKeyViewSet, MembershipViewSet, OrganizationViewSet, ServiceAccountViewSet

router = DefaultRouter()
router.register("organizations", OrganizationViewSet, basename="organization")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("service-accounts", ServiceAccountViewSet, basename="service-account")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("notification-channels", ChannelViewSet, basename="notification-channel")
router.register("notifications", NotificationViewSet, basename="notification")
