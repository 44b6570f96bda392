"""API for approval rules, promotion requests (create with Idempotency-Key, list, detail with the
frozen plan and decisions, approve/reject/cancel/retry/override-freeze) and deployment rollback,
one module per resource; the list filters are in `apps.approvals.filtersets`.

Views are thin: the services decide who may and which transition is allowed (a refused transition
is a 409 naming the request's state). Plans hold secret references only, never values."""

from apps.approvals.filtersets import PromotionFilter, RuleFilter

from .promotions import (
    ApproveSerializer,
    CancelSerializer,
    DecisionSerializer,
    GateSerializer,
    OverrideFreezeSerializer,
    PromotionCreateSerializer,
    PromotionDetailSerializer,
    PromotionSerializer,
    PromotionViewSet,
    RejectSerializer,
    RuleStatusSerializer,
)
from .rollback import DeploymentRollbackViewSet, RollbackResponse, RollbackSerializer
from .rules import (
    RULE_LINKS,
    SLUG,
    ApprovalRuleSerializer,
    ApprovalRuleViewSet,
    ProjectReferenceField,
    RuleCreateSerializer,
    RuleUpdateSerializer,
    User,
)

__all__ = [
    "RULE_LINKS",
    "SLUG",
    "ApprovalRuleSerializer",
    "ApprovalRuleViewSet",
    "ApproveSerializer",
    "CancelSerializer",
    "DecisionSerializer",
    "DeploymentRollbackViewSet",
    "GateSerializer",
    "OverrideFreezeSerializer",
    "ProjectReferenceField",
    "PromotionCreateSerializer",
    "PromotionDetailSerializer",
    "PromotionFilter",
    "PromotionSerializer",
    "PromotionViewSet",
    "RejectSerializer",
    "RollbackResponse",
    "RollbackSerializer",
    "RuleCreateSerializer",
    "RuleFilter",
    "RuleStatusSerializer",
    "RuleUpdateSerializer",
    "User",
]
