"""The screens. Thin: parse a form, call a selector or a service, render. Objects the user may not
see answer 404; a service's refusal is shown on the form (with its 4xx status), never as a 500."""

import re

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.db import transaction
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from apps.approvals import services as approvals
from apps.core.admin import add_domain_error
from apps.core.errors import DomainError, NotFound
from apps.core.errors import PermissionDenied as DomainPermissionDenied
from apps.core.models import without_blobs
from apps.insights.delivery import DEFAULT_DAYS, delivery_insights
from apps.pipelines.selectors import pipelines_for, projects_for
from apps.runs import services as run_services
from apps.runs.cron import next_fire_times
from apps.runs.models import TERMINAL, Schedule
from apps.runs.selectors import runs_for, schedules_for, triggers_for
from apps.variables import services as variable_services
from apps.variables.forms import text_to_value
from apps.variables.models import PERSONAL_KINDS, VariableType
from apps.variables.selectors import personal_overrides_of

from . import presenters, selectors
from .forms import (
    NO_ENVIRONMENTS_EXPLANATION,
    AuditFilterForm,
    DecisionForm,
    InboxFilterForm,
    InsightsFilterForm,
    PersonalOverrideForm,
    PreviewForm,
    PromotionRequestForm,
    RunForm,
    ScheduleForm,
    TriggerForm,
)

AUDIT_PAGE_SIZE = 50


def screen(request, template: str, context: dict, status: int = 200):
    """Render a screen with the navigation counts."""
    context["nav"] = selectors.navigation_counts(request.user)
    return render(request, template, context, status=status)


def submit(form, call, place_error=add_domain_error):
    """Validate `form` and call `call(cleaned_data)` (one service call). Returns (result, status):
    the result and 200, or None and 400 for bad input or the service's 4xx, its refusal put on the form."""
    if not form.is_valid():
        return None, 400
    try:
        return call(form.cleaned_data), 200
    except DomainError as exc:
        place_error(form, exc)
        return None, exc.status


def _visible_request(user, pk: int):
    try:
        return approvals.request_for_user(user, pk)
    except NotFound as exc:
        raise Http404(exc.message) from exc


# --- approvals ------------------------------------------------------------------------------------------


@login_required
@require_GET
def inbox(request):
    form = InboxFilterForm(request.user, request.GET or None)
    filters = form.cleaned_data if form.is_bound and form.is_valid() else {}
    lists = selectors.inbox(request.user, filters) if not form.errors else {"awaiting": [], "mine": [], "decided": []}
    return screen(request, "web/inbox.html", {"form": form, **lists}, status=400 if form.errors else 200)


def _detail(request, promotion, form, status=200):
    context = presenters.request_page(request.user, promotion)
    return screen(request, "web/request_detail.html", {**context, "form": form}, status=status)


@login_required
@require_GET
def request_detail(request, pk: int):
    promotion = _visible_request(request.user, pk)
    return _detail(request, promotion, DecisionForm(initial={"plan_hash": promotion.plan_hash}))


@login_required
@require_POST
def request_decide(request, pk: int):
    promotion = _visible_request(request.user, pk)
    form = DecisionForm(request.POST)
    status = 400
    if form.is_valid():
        data = form.cleaned_data
        try:
            if data["decision"] == "approve":
                promotion = approvals.promotion_approve(
                    actor=request.user, request=promotion, comment=data["comment"], plan_hash=data["plan_hash"]
                )
            else:
                promotion = approvals.promotion_reject(actor=request.user, request=promotion, comment=data["comment"])
        except DomainError as exc:
            add_domain_error(form, exc)
            status = exc.status
        else:
            messages.success(request, f"You {data['decision']}d request #{promotion.pk}; it is now {promotion.state}.")
            return redirect("web:request-detail", pk=promotion.pk)
    return _detail(request, _visible_request(request.user, pk), form, status=status)


@login_required
@require_POST
def request_cancel(request, pk: int):
    promotion = _visible_request(request.user, pk)
    try:
        approvals.promotion_cancel(actor=request.user, request=promotion, comment=request.POST.get("comment", "")[:500])
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"Request #{promotion.pk} cancelled.")
    return redirect("web:request-detail", pk=promotion.pk)


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


# --- run, schedule and preview dialogs; the run page -----------------------------------------------------------


@login_required
@require_POST
def pipeline_run(request, pk: int):
    """The run dialog: start a run through the runs service and go to its page."""
    pipeline = _visible_pipeline(request, pk)
    variables = selectors.pipeline_variables(request.user, pipeline)
    form = RunForm(request.user, pipeline, selectors.runtime_parameters(variables), request.POST)
    return _dialog(
        request,
        pipeline,
        form,
        lambda data: run_services.run_create_once(
            actor=request.user,
            pipeline=pipeline,
            idempotency_key=data["idempotency_key"],
            environment=data.get("environment"),
            version=data["version"],
            parameters=form.parameters(),
            sample=data.get("sample", False),
        ),
        lambda answer: redirect("web:run-detail", pk=answer[0].pk),
        shown_as="run_form",
        place_error=RunForm.add_service_error,
        open_dialog="run",
    )


@login_required
@require_POST
def pipeline_schedule_create(request, pk: int):
    """The schedule dialog (new schedule): the runs service decides who may, cron and time zone."""
    pipeline = _visible_pipeline(request, pk)
    form = ScheduleForm(request.user, pipeline, request.POST)

    def then(schedule):
        done = f"Schedule saved: {schedule.cron} ({schedule.timezone}) in {schedule.environment.name}."
        return _back(request, pipeline, "schedules-h", done)

    def save(data):
        return run_services.schedule_save(
            actor=request.user,
            pipeline=pipeline,
            environment=_environment(data, pipeline),
            cron=data["cron"],
            timezone_name=data["timezone"],
            enabled=data["enabled"],
        )

    return _dialog(request, pipeline, form, save, then, shown_as="schedule_form", open_dialog="schedule")


def _visible_schedule(request, pk: int):
    return get_object_or_404(schedules_for(request.user).select_related("pipeline__project__organization"), pk=pk)


@login_required
@require_POST
def schedule_update(request, pk: int):
    """Change a schedule's cron, time zone or switch it on or off (same service and rule as the API)."""
    schedule = _visible_schedule(request, pk)
    pipeline = schedule.pipeline
    form = ScheduleForm(request.user, pipeline, request.POST, schedule=schedule)

    def save(data):
        with transaction.atomic():
            return run_services.schedule_save(
                actor=request.user,
                pipeline=pipeline,
                environment=schedule.environment,
                cron=data["cron"],
                timezone_name=data["timezone"],
                enabled=data["enabled"],
                schedule=Schedule.objects.select_for_update().get(pk=schedule.pk),
            )

    def then(_saved):
        return _back(request, pipeline, "schedules-h", f"Schedule in {schedule.environment.name} saved.")

    return _dialog(request, pipeline, form, save, then, shown_as="edit_form", edit_schedule=schedule)


@login_required
@require_POST
def schedule_delete(request, pk: int):
    schedule = _visible_schedule(request, pk)
    return _change(
        request,
        schedule.pipeline,
        lambda: run_services.schedule_delete(
            actor=request.user, schedule=Schedule.objects.select_for_update().get(pk=pk)
        ),
        error="schedule_error",
        done=lambda: f"Schedule in {schedule.environment.name} deleted.",
        section="schedules-h",
    )


@login_required
@require_POST
def pipeline_trigger_create(request, pk: int):
    """The trigger dialog (new trigger): the runs service decides who may, cycles and when it is on."""
    pipeline = _visible_pipeline(request, pk)
    form = TriggerForm(request.user, pipeline, request.POST)

    def save(data):
        return run_services.trigger_create(
            actor=request.user,
            pipeline=pipeline,
            environment=_environment(data, pipeline),
            kind=data["kind"],
            upstream_pipeline=data["upstream_pipeline"],
            signing_secret=data["signing_secret"],
            enabled=data["enabled"],
        )

    def then(trigger):
        return _back(request, pipeline, "triggers-h", f"Trigger saved in {trigger.environment.name}.")

    return _dialog(request, pipeline, form, save, then, shown_as="trigger_form", open_dialog="trigger")


def _visible_trigger(request, pk: int):
    return get_object_or_404(triggers_for(request.user).select_related("pipeline__project__organization"), pk=pk)


def _trigger_change(request, pk: int, change, done: str):
    """Switch or delete a trigger through the runs service; a refusal is shown on the page with its 4xx."""
    trigger = _visible_trigger(request, pk)
    return _change(
        request,
        trigger.pipeline,
        lambda: change(triggers_for(request.user).select_for_update(of=("self",)).get(pk=pk)),
        error="trigger_error",
        done=lambda: f"Trigger in {trigger.environment.name} {done}.",
        section="triggers-h",
    )


@login_required
@require_POST
def trigger_switch(request, pk: int):
    """Switch a trigger on or off (same service and rule as the API)."""
    enabled = request.POST.get("enabled") == "true"
    return _trigger_change(
        request,
        pk,
        lambda trigger: run_services.trigger_update(actor=request.user, trigger=trigger, enabled=enabled),
        "switched on" if enabled else "switched off",
    )


@login_required
@require_POST
def trigger_delete(request, pk: int):
    return _trigger_change(
        request, pk, lambda trigger: run_services.trigger_delete(actor=request.user, trigger=trigger), "deleted"
    )


@login_required
@require_GET
def schedule_preview(request):
    """The next fire times of a cron expression in a time zone (the schedule dialog's live preview)."""
    cron, zone = request.GET.get("cron", "")[:100], request.GET.get("timezone", "UTC")[:64]
    try:
        upcoming = next_fire_times(cron, zone)
    except DomainError as exc:
        return JsonResponse({"error": exc.message}, status=exc.status)
    return JsonResponse({"next": presenters.fire_times(upcoming)})


@login_required
@require_GET
def pipeline_preview(request, pk: int):
    """Preview one source node's first rows as a table (the runs service caps and allows them)."""
    pipeline = _visible_pipeline(request, pk)
    environments = presenters.preview_environments(request.user, pipeline)
    form = PreviewForm(request.user, pipeline, environments, presenters.source_nodes(pipeline), request.GET)
    preview, status = submit(
        form,
        lambda data: run_services.preview(
            actor=request.user,
            pipeline=pipeline,
            environment=_environment(data, pipeline),
            node_id=data["node"],
            limit=data["limit"],
        ),
    )
    return _pipeline(request, pipeline, status=status, preview_form=form, preview=preview)


def _visible_run(request, pk: int):
    return get_object_or_404(runs_for(request.user), pk=pk)


@login_required
@require_GET
def run_detail(request, pk: int):
    run = _visible_run(request, pk)
    return screen(request, "web/run.html", presenters.run_page(request.user, run))


@login_required
@require_GET
def run_status(request, pk: int):
    """What the run page polls while the run goes: its status (the page reloads once it is final)."""
    run = get_object_or_404(without_blobs(runs_for(request.user)), pk=pk)
    response = JsonResponse({"id": run.pk, "status": run.status, "finished": run.status in TERMINAL})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def run_cancel(request, pk: int):
    run = _visible_run(request, pk)
    try:
        run_services.run_cancel(actor=request.user, run=run)
    except DomainError as exc:
        context = presenters.run_page(request.user, run)
        return screen(request, "web/run.html", {**context, "action_error": exc.message}, status=exc.status)
    messages.success(request, f"Run #{run.pk}: cancel requested.")
    return redirect("web:run-detail", pk=run.pk)


@login_required
@require_POST
def run_rerun(request, pk: int):
    run = _visible_run(request, pk)
    try:
        again = run_services.run_rerun(actor=request.user, run=run)
    except DomainError as exc:
        context = presenters.run_page(request.user, run)
        return screen(request, "web/run.html", {**context, "action_error": exc.message}, status=exc.status)
    messages.success(request, f"Run #{again.pk} started like run #{run.pk}.")
    return redirect("web:run-detail", pk=again.pk)


# --- audit ----------------------------------------------------------------------------------------------------


@login_required
@require_GET
def audit(request):
    form = AuditFilterForm(request.user, request.GET or None)
    if form.is_bound and not form.is_valid():
        return screen(request, "web/audit.html", {"form": form, "entries": [], "page": None}, status=400)
    filters = form.cleaned_data if form.is_bound else {}
    paginator = Paginator(selectors.audit_rows(request.user, filters), AUDIT_PAGE_SIZE)
    page = paginator.get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {"form": form, "page": page, "entries": selectors.audit_entries(list(page.object_list))}
    return screen(request, "web/audit.html", {**context, "query": query.urlencode()})


# --- delivery insights ----------------------------------------------------------------------------------------


@login_required
@require_GET
def insights(request):
    form = InsightsFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return screen(request, "web/insights.html", {"form": form, "pipelines": []}, status=400)
    days = (form.cleaned_data.get("days") if form.is_bound else None) or DEFAULT_DAYS
    pairs = delivery_insights(request.user, days=days)
    return screen(request, "web/insights.html", {"form": form, "days": days, "pipelines": presenters.insights(pairs)})
