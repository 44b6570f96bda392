"""The screens. Thin: parse a form, call a selector or a service, render. Objects the user may not
see answer 404; a service's refusal is shown on the form (with its 4xx status), never as a 500.

One module per group of screens; `apps.web.urls` routes to the names re-exported here."""

from .activity import audit, insights
from .approvals import inbox, request_cancel, request_decide, request_detail
from .pipelines import (
    pipeline_detail,
    pipeline_personal_clear,
    pipeline_personal_set,
    pipeline_promote,
    project_matrix,
    projects,
)
from .runs import (
    pipeline_preview,
    pipeline_run,
    pipeline_schedule_create,
    pipeline_trigger_create,
    run_cancel,
    run_detail,
    run_rerun,
    run_status,
    schedule_delete,
    schedule_preview,
    schedule_update,
    trigger_delete,
    trigger_switch,
)

__all__ = [
    "audit",
    "inbox",
    "insights",
    "pipeline_detail",
    "pipeline_personal_clear",
    "pipeline_personal_set",
    "pipeline_preview",
    "pipeline_promote",
    "pipeline_run",
    "pipeline_schedule_create",
    "pipeline_trigger_create",
    "project_matrix",
    "projects",
    "request_cancel",
    "request_decide",
    "request_detail",
    "run_cancel",
    "run_detail",
    "run_rerun",
    "run_status",
    "schedule_delete",
    "schedule_preview",
    "schedule_update",
    "trigger_delete",
    "trigger_switch",
]
