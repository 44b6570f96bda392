"""Promotions: approval rules, requests with a frozen plan, decisions, the state machine, the
deploying worker, sweeps and freeze-window break-glass, one module per concern (rollback is runs'
`deployment_rollback`; approvals reacts through `apps.runs.services.deployments.rollback_hooks`).

The PromotionRequest row is the outbox: every transition is committed to the row first, and Celery
is only the wake-up. A request deploys at most once: the deploying step locks the row, checks its
state, and records the Deployment and the `deployed` state in one transaction.

This package re-exports the names the single `services` module had, so `services.X` keeps working;
patch a name where it is looked up (e.g. `services.base._enqueue`)."""

from apps.runs.services import deployment_rollback, runs_written_by

from .actions import PROMOTION_ACTIONS, approval_blockers, promotion_actions, rule_status
from .base import MAX_TEXT, S, _enqueue, transition
from .plan import build_plan, config_diff, evaluate_gates, plan_hash_of, refresh_plan
from .requests import (
    promotion_approve,
    promotion_cancel,
    promotion_override_freeze,
    promotion_reject,
    promotion_request_create,
    promotion_retry,
    request_for_user,
)
from .rules import direct_deploy_guard, rule_delete, rule_save, rules_for, rules_for_requests, validate_rule
from .workflow import (
    _finish,
    _prepare,
    promotion_execute,
    promotion_rolled_back,
    promotions_remind,
    promotions_replan,
    promotions_sweep,
    promotions_watch,
)

__all__ = [
    "MAX_TEXT",
    "PROMOTION_ACTIONS",
    "S",
    "_enqueue",
    "_finish",
    "_prepare",
    "approval_blockers",
    "build_plan",
    "config_diff",
    "deployment_rollback",
    "direct_deploy_guard",
    "evaluate_gates",
    "plan_hash_of",
    "promotion_actions",
    "promotion_approve",
    "promotion_cancel",
    "promotion_execute",
    "promotion_override_freeze",
    "promotion_reject",
    "promotion_request_create",
    "promotion_retry",
    "promotion_rolled_back",
    "promotions_remind",
    "promotions_replan",
    "promotions_sweep",
    "promotions_watch",
    "refresh_plan",
    "request_for_user",
    "rule_delete",
    "rule_save",
    "rule_status",
    "rules_for",
    "rules_for_requests",
    "runs_written_by",
    "transition",
    "validate_rule",
]
