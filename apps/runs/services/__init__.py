"""Deployments, runs (create, dispatch, execute, cancel, claim, report), baselines, previews and
schedules, one module per concern. Runs are the outbox: the row is the truth and Celery only the
wake-up call.

This package re-exports the names the single `services` module had, so `services.X` keeps working;
patch a name where it is looked up (e.g. `services.runs.dispatch`, `services.execution._limits`)."""

from .baselines import compare_with_baseline
from .deployments import (
    DEPLOYMENT_ACTIONS,
    active_deployment,
    deploy,
    deploy_direct,
    deployed_configuration,
    deployment_actions,
    deployment_rollback,
    direct_deploy_guards,
    rollback_hooks,
    runs_written_by,
)
from .execution import (
    LeaseKeeper,
    _claim,
    _limits,
    preview,
    preview_answer,
    run_claim_external,
    run_execute,
    run_report_external,
)
from .runs import (
    RUN_ACTIONS,
    destination_violations,
    dispatch,
    personal_user,
    run_actions,
    run_cancel,
    run_create,
    run_create_once,
    run_rerun,
    runs_only_deployed,
    runs_sweep,
    sample_answer,
)
from .schedules import due_ticks, require_schedule_edit, schedule_delete, schedule_save, schedules_fire_due
from .triggers import (
    trigger_create,
    trigger_delete,
    trigger_fires_start,
    trigger_hook_url,
    trigger_update,
    trigger_webhook_receive,
    triggers_fire_on_success,
)

__all__ = [
    "DEPLOYMENT_ACTIONS",
    "RUN_ACTIONS",
    "LeaseKeeper",
    "_claim",
    "_limits",
    "active_deployment",
    "compare_with_baseline",
    "deploy",
    "deploy_direct",
    "deployed_configuration",
    "deployment_actions",
    "deployment_rollback",
    "destination_violations",
    "direct_deploy_guards",
    "dispatch",
    "due_ticks",
    "personal_user",
    "preview",
    "preview_answer",
    "require_schedule_edit",
    "rollback_hooks",
    "run_actions",
    "run_cancel",
    "run_claim_external",
    "run_create",
    "run_create_once",
    "run_execute",
    "run_report_external",
    "run_rerun",
    "runs_only_deployed",
    "runs_sweep",
    "runs_written_by",
    "sample_answer",
    "schedule_delete",
    "schedule_save",
    "schedules_fire_due",
    "trigger_create",
    "trigger_delete",
    "trigger_fires_start",
    "trigger_hook_url",
    "trigger_update",
    "trigger_webhook_receive",
    "triggers_fire_on_success",
]
