"""The run, schedule, trigger and preview dialogs of the pipeline page, and the run page."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db import transaction
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_GET, require_POST

from apps.core.errors import DomainError
from apps.core.models import without_blobs
from apps.runs import services as run_services
from apps.runs.cron import next_fire_times
from apps.runs.models import TERMINAL, Schedule
from apps.runs.selectors import runs_for, schedules_for, triggers_for

from .. import presenters, selectors
from ..forms import (
    PreviewForm,
    RunForm,
    ScheduleForm,
    TriggerForm,
)
from .base import screen, submit
from .pipelines import _back, _change, _dialog, _environment, _pipeline, _visible_pipeline

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
