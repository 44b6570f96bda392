"""The API v1 router: each app registers its viewsets here."""

from rest_framework.routers import DefaultRouter

from apps.approvals.api import ApprovalRuleViewSet, DeploymentRollbackViewSet, PromotionViewSet
from apps.audit.api import AuditViewSet
from apps.connections.api import ConnectionBindingViewSet, ConnectionRoleViewSet
from apps.environments.api import EnvironmentViewSet
from apps.insights.api import InsightsViewSet
from apps.notifications.api import ChannelViewSet, NotificationViewSet
from apps.pipelines.api import PipelineViewSet, ProjectViewSet
from apps.repositories.api import RepositoryViewSet
from apps.resolution.api import PipelineResolutionViewSet, ProjectMatrixViewSet
from apps.runs.api import DeploymentViewSet, RunViewSet, ScheduleViewSet
from apps.runs.api_triggers import PipelineTriggerViewSet
from apps.secrets.api import SecretViewSet
from apps.tenancy.api import ApiKeyViewSet, MembershipViewSet, OrganizationViewSet, ServiceAccountViewSet
from apps.variables.api import VariableOverrideViewSet, VariableViewSet
from apps.variables.api_personal import PersonalOverrideViewSet


class Router(DefaultRouter):
    """DRF's router, except that its root lists every resource once. Several viewsets share a prefix
    (`projects` + its matrix action, `pipelines` + resolution, `deployments` + rollback); DRF's root
    keeps the last one registered, which has no list route, so the resource vanished from the root."""

    def get_api_root_view(self, api_urls=None):
        list_name = self.routes[0].name
        api_root_dict = {}
        for prefix, viewset, basename in self.registry:
            if prefix not in api_root_dict and hasattr(viewset, "list"):
                api_root_dict[prefix] = list_name.format(basename=basename)
        return self.APIRootView.as_view(api_root_dict=api_root_dict)


router = Router()
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
router.register("repositories", RepositoryViewSet, basename="repository")
router.register("variables", VariableViewSet, basename="variable")
router.register("variable-overrides", VariableOverrideViewSet, basename="variable-override")
router.register("personal-overrides", PersonalOverrideViewSet, basename="personal-override")
router.register("connection-roles", ConnectionRoleViewSet, basename="connection-role")
router.register("connection-bindings", ConnectionBindingViewSet, basename="connection-binding")
router.register("runs", RunViewSet, basename="run")
router.register("deployments", DeploymentViewSet, basename="deployment")
router.register("schedules", ScheduleViewSet, basename="schedule")
router.register("triggers", PipelineTriggerViewSet, basename="trigger")
router.register("approval-rules", ApprovalRuleViewSet, basename="approval-rule")
router.register("promotions", PromotionViewSet, basename="promotion")
# Rollback lives in approvals (it also marks the promotion rolled back); runs sits below it.
router.register("deployments", DeploymentRollbackViewSet, basename="deployment-rollback")
router.register("audit", AuditViewSet, basename="audit")
router.register("insights", InsightsViewSet, basename="insights")
