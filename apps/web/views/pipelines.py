"""Projects, the configuration matrix and the pipeline page, with the page's dialog plumbing
(`_dialog`, `_change`, `_back`) that the run, schedule and trigger dialogs share."""

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.approvals import services as approvals
from apps.core.admin import add_domain_error
from apps.core.errors import DomainError
from apps.core.errors import PermissionDenied as DomainPermissionDenied
from apps.pipelines.selectors import pipelines_for, projects_for
from apps.variables import services as variable_services
from apps.variables.forms import text_to_value
from apps.variables.models import PERSONAL_KINDS, VariableType
from apps.variables.selectors import personal_overrides_of

from .. import presenters, selectors
from ..forms import (
    NO_ENVIRONMENTS_EXPLANATION,
    PersonalOverrideForm,
    PreviewForm,
    PromotionRequestForm,
    RunForm,
    ScheduleForm,
    TriggerForm,
)
from .base import screen, submit

# --- projects, matrix, pipelines -----------------------------------------------------------------------------


@login_required
@require_GET
def projects(request):
    return screen(request, "web/projects.html", {"projects": selectors.visible_projects(request.user)})


@login_required
@require_GET
def project_matrix(request, pk: int):
    project = get_object_or_404(projects_for(request.user), pk=pk)
    raw_page = request.GET.get("page", "")  # like the audit page's paginator: anything odd is page 1
    page = int(raw_page) if re.fullmatch(r"[1-9][0-9]{0,8}", raw_page) else 1
    try:
        context = presenters.matrix_page(request.user, project, page=page)
    except DomainPermissionDenied as exc:
        raise DjangoPermissionDenied(exc.message) from exc
    return screen(request, "web/matrix.html", {"project": project, **context})


def _pipeline(request, pipeline, status=200, **bound):
    """The pipeline page with its dialogs; `bound` holds the form a POST re-renders (with its errors)
    and `open_dialog` the dialog to show open."""
    user = request.user
    context = presenters.pipeline_page(user, pipeline)
    preview_environments = presenters.preview_environments(user, pipeline)
    variables = selectors.pipeline_variables(user, pipeline)
    forms = {
        "form": bound.pop("form", None) or PromotionRequestForm(user, pipeline),
        "run_form": bound.pop("run_form", None) or RunForm(user, pipeline, selectors.runtime_parameters(variables)),
        "personal_form": bound.pop("personal_form", None) or PersonalOverrideForm(user, pipeline, variables),
        "schedule_form": bound.pop("schedule_form", None) or ScheduleForm(user, pipeline),
        "trigger_form": bound.pop("trigger_form", None) or TriggerForm(user, pipeline),
        "preview_form": bound.pop("preview_form", None)
        or PreviewForm(user, pipeline, preview_environments, presenters.source_nodes(pipeline)),
    }
    context.update(
        forms,
        schedules=presenters.schedules(user, pipeline),
        triggers=presenters.triggers(user, pipeline),
        may_preview=preview_environments.exists(),
        personal=presenters.personal_rows(user, variables),
        # The section shows where the user sees a stage that keeps personal values (no query: the
        # stages are the page's own); the form lists them and the variables service decides.
        may_personal=any(stage["environment"].kind in PERSONAL_KINDS for stage in context["stages"]),
        no_environments_explanation=NO_ENVIRONMENTS_EXPLANATION,
        **bound,
    )
    return screen(request, "web/pipeline.html", context, status=status)


def _dialog(request, pipeline, form, call, then, *, shown_as: str, place_error=add_domain_error, **page):
    """A pipeline-page dialog: submit `form` through `call` (see submit) and answer `then(result)`; else the
    page again with its 4xx, the bound form as `shown_as` and `page` (such as the dialog to open)."""
    result, status = submit(form, call, place_error)
    if result is None:
        return _pipeline(request, pipeline, status=status, **{shown_as: form}, **page)
    return then(result)


def _change(request, pipeline, change, *, error: str, done, section: str):
    """Make one service call `change()` in a transaction (it locks what it changes); a refusal is shown on the
    pipeline page under `error` with its 4xx, else back to the page's `section` with the message `done()`."""
    try:
        with transaction.atomic():
            change()
    except DomainError as exc:
        return _pipeline(request, pipeline, status=exc.status, **{error: exc.message})
    return _back(request, pipeline, section, done())


def _back(request, pipeline, section: str, message: str):
    """Back to a section of the pipeline page, saying what was done."""
    messages.success(request, message)
    return redirect(reverse("web:pipeline-detail", args=[pipeline.pk]) + f"#{section}")


def _environment(data, pipeline):
    """The stage a dialog names (its select is hidden with a single stage: the project's default)."""
    return data.get("environment") or pipeline.project.default_environment


@login_required
@require_POST
def pipeline_personal_set(request, pk: int):
    """Set your own value for a variable in a development environment (the variables service decides)."""
    pipeline = _visible_pipeline(request, pk)
    form = PersonalOverrideForm(
        request.user, pipeline, selectors.pipeline_variables(request.user, pipeline), request.POST
    )

    def save(data):
        variable = data["variable"]
        value = None if variable.type == VariableType.SECRET else text_to_value(variable.type, data["value"], "value")
        return variable_services.personal_override_set(
            actor=request.user,
            variable=variable,
            environment=_environment(data, pipeline),
            value=value,
            secret=data.get("secret"),
        )

    def then(row):
        return _back(
            request, pipeline, "personal-h", f"Your value of {row.variable.name} in {row.environment.name} is set."
        )

    return _dialog(request, pipeline, form, save, then, shown_as="personal_form")


@login_required
@require_POST
def pipeline_personal_clear(request, pk: int, row: int):
    """Clear one of your own personal values (another member's row is a missing row)."""
    pipeline = _visible_pipeline(request, pk)
    override = get_object_or_404(personal_overrides_of(request.user), pk=row)
    variable_services.personal_override_delete(actor=request.user, override=override)
    done = f"Your value of {override.variable.name} in {override.environment.name} is cleared."
    return _back(request, pipeline, "personal-h", done)


def _visible_pipeline(request, pk: int):
    return get_object_or_404(pipelines_for(request.user).select_related("project__organization"), pk=pk)


@login_required
@require_GET
def pipeline_detail(request, pk: int):
    pipeline = _visible_pipeline(request, pk)
    return _pipeline(request, pipeline, open_dialog="run" if request.GET.get("run") == "1" else "")


@login_required
@require_POST
def pipeline_promote(request, pk: int):
    pipeline = _visible_pipeline(request, pk)
    form = PromotionRequestForm(request.user, pipeline, request.POST)

    def then(answer):
        promotion, created = answer
        if created:
            messages.success(request, f"Promotion requested: #{promotion.pk} into {promotion.target.name}.")
        return redirect("web:request-detail", pk=promotion.pk)

    return _dialog(
        request,
        pipeline,
        form,
        lambda data: approvals.promotion_request_create(
            actor=request.user,
            pipeline=pipeline,
            version=data["version"],
            source=data["source"],
            target=data["target"],
            reason=data["reason"],
            ticket=data["ticket"],
            attached_runs=list(data["attached_runs"]),
            idempotency_key=data["idempotency_key"],
        ),
        then,
        shown_as="form",
    )
