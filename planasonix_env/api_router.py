"""The API v1 router: each app registers its viewsets here."""

from rest_framework.routers import DefaultRouter

from apps.approvals.api import ApprovalRuleViewSet, DeploymentRollbackViewSet, PromotionViewSet
from apps.connections.api import ConnectionBindingViewSet, ConnectionRoleViewSet
from apps.environments.api import EnvironmentViewSet
from apps.notifications.api import ChannelViewSet, NotificationViewSet
from apps.pipelines.api import PipelineViewSet, ProjectViewSet
from apps.resolution.api import PipelineResolutionViewSet, ProjectMatrixViewSet
from apps.runs.api import DeploymentViewSet, RunViewSet, ScheduleViewSet
from apps.secrets.api import SecretViewSet
from apps.tenancy.api import ApiKeyViewSet, MembershipViewSet, OrganizationViewSet, ServiceAccountViewSet
from apps.variables.api import VariableOverrideViewSet, VariableViewSet

router = DefaultRouter()
router.register("organizations", OrganizationViewSet, basename="organization")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("service-accounts", ServiceAccountViewSet, basename="service-account")
router.register("api-keys", ApiKeyViewSet, basename="api-key")
router.register("environments", EnvironmentViewSet, basename="environment")
router.register("notification-channels", ChannelViewSet, basename="notification-channel")
router.register("notifications", NotificationViewSet, basename="notification")
router.register("secrets", SecretViewSet, basename="secret")
router.register("projects", ProjectViewSet, basename="project")
router.register("projects", ProjectMatrixViewSet, basename="project-matrix")
router.register("pipelines", PipelineViewSet, basename="pipeline")
router.register("pipelines", PipelineResolutionViewSet, basename="pipeline-resolution")
router.register("variables", VariableViewSet, basename="variable")
router.register("variable-overrides", VariableOverrideViewSet, basename="variable-override")
router.register("connection-roles", ConnectionRoleViewSet, basename="connection-role")
router.register("connection-bindings", ConnectionBindingViewSet, basename="connection-binding")
router.register("runs", RunViewSet, basename="run")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("schedules", ScheduleViewSet, basename="schedule")
router.register("approval-rules", ApprovalRuleViewSet, basename="approval-rule")
router.register("promotions", PromotionViewSet, basename="promotion")
# Rollback lives in approvals (it also marks the promotion rolled back); runs sits below it.
router.register("deployments", DeploymentRollbackViewSet, basename="deployment-rollback")
