"""Admin for runs (read-mostly, with a "cancel" action), deployments (read-only history),
schedules (added and changed through services.schedule_save, so cron, time zone, locks and the
permission door hold here as form errors, exactly as in the API) and triggers (through the triggers
service, a ServiceModelAdmin).

Non-superuser staff see only rows in environments they may view; the environment and pipeline
filters offer only those."""

from django import forms
from django.contrib import admin, messages
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin import (
    AuditedAdmin,
    LightModelAdmin,
    ServiceActionMixin,
    ServiceModelAdmin,
    ViewOnlyAdminMixin,
    adopt,
    dry_run,
    pretty_json,
)
from apps.core.errors import DomainError
from apps.environments import permissions as perms
from apps.environments.admin_rows import EnvironmentFilter, EnvironmentScopedAdminMixin
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline
from apps.secrets.models import Secret

from . import selectors, services
from .models import DEPLOYMENT_RECORD, RUN_LIFECYCLE, Deployment, PipelineTrigger, Run, Schedule


class PipelineFilter(admin.SimpleListFilter):
    """Only the pipelines of the staff user's organizations."""

    title = "pipeline"
    parameter_name = "pipeline"

    def lookups(self, request, model_admin):
        pipelines = Pipeline.objects.restrict(request.user).select_related("project").order_by("project__slug", "slug")
        return [(str(p.pk), str(p)) for p in pipelines]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(pipeline_id=value) if value and value.isdigit() else queryset


# --- runs ------------------------------------------------------------------------------------------


@admin.register(Run)
class RunAdmin(ViewOnlyAdminMixin, EnvironmentScopedAdminMixin, ServiceActionMixin, LightModelAdmin):
    """Runs are created by the API, schedules and the CLI; here they are read and cancelled."""

    list_display = ["id", "pipeline", "version_number", "environment", "status", "trigger", "executor", "created_at"]
    list_filter = ["status", "trigger", "executor", EnvironmentFilter, PipelineFilter, "environment__kind"]
    list_select_related = ["pipeline__project", "version", "environment__organization"]
    search_fields = ["pipeline__slug", "pipeline__project__slug", "environment__slug", "error", "claimed_by"]
    date_hierarchy = "created_at"
    actions = ["cancel_runs", "rerun_runs"]
    fields = [
        "pipeline",
        "version_number",
        "environment",
        "deployment",
        "status",
        "trigger",
        "executor",
        "requested_by",
        "parameters_display",
        "sample",
        "error",
        "metrics_display",
        "baseline_display",
        "log_display",
        *RUN_LIFECYCLE,
        "configuration_display",
    ]
    readonly_fields = fields  # type: ignore[assignment]  # all strings; the stubs type `fields` wider

    @admin.display(description="version", ordering="version__number")
    def version_number(self, obj):
        return obj.version.number

    @admin.display(description="parameters")
    def parameters_display(self, obj):
        return pretty_json(obj.parameters)

    @admin.display(description="metrics")
    def metrics_display(self, obj):
        return pretty_json(obj.metrics)

    @admin.display(description="baseline comparison")
    def baseline_display(self, obj):
        return pretty_json(obj.baseline)

    @admin.display(description="log excerpt")
    def log_display(self, obj):
        return format_html("<pre>{}</pre>", obj.log_excerpt) if obj.log_excerpt else "—"

    @admin.display(description="resolved configuration (secrets redacted)")
    def configuration_display(self, obj):
        return pretty_json(obj.resolved)

    def get_queryset(self, request):
        return selectors.runs_for(request.user)

    def view_on_site(self, obj):
        return reverse("web:run-detail", args=[obj.pk])

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def _act(self, request, queryset, service, action: str, done_text: str) -> None:
        """Offer each selected run to the service only if run_actions allows `action`."""
        done = 0
        for run in queryset.select_related("environment", "pipeline", "version"):
            answer = services.run_actions(request.user, run)[action]
            if not answer.allowed:
                message = f"Run {run.pk}: cannot {action} it: {'; '.join(answer.reasons)}."
                self.message_user(request, message, level=messages.WARNING)
                continue
            if self.run_service(request, service, actor=request.user, run=run) is not None:
                done += 1
        if done:
            self.message_user(request, f"{done_text} {done} run(s).", level=messages.SUCCESS)

    @admin.action(description="Cancel selected runs")
    def cancel_runs(self, request, queryset):
        self._act(request, queryset, services.run_cancel, "cancel", "Cancelled")

    @admin.action(description="Run selected finished runs again")
    def rerun_runs(self, request, queryset):
        self._act(request, queryset, services.run_rerun, "rerun", "Started again:")


# --- deployments -------------------------------------------------------------------------------------


@admin.register(Deployment)
class DeploymentAdmin(ViewOnlyAdminMixin, EnvironmentScopedAdminMixin, AuditedAdmin):
    """Which version runs where, and what it replaced (read-only: deploys go through promotions or
    the API's direct deploy)."""

    list_display = ["pipeline", "version_number", "environment", "is_active", "deployed_by", "created_at", "previous"]
    list_filter = ["is_active", EnvironmentFilter, PipelineFilter, "environment__kind"]
    list_select_related = [
        "pipeline__project",
        "version",
        "environment__organization",
        "deployed_by",
        "previous__pipeline__project",
        "previous__version",
        "previous__environment",
    ]
    search_fields = ["pipeline__slug", "environment__slug", "note"]
    date_hierarchy = "created_at"
    fields = [
        "pipeline",
        *DEPLOYMENT_RECORD,
        "note",
        "created_at",
        "deactivated_at",
    ]
    readonly_fields = fields

    @admin.display(description="version", ordering="version__number")
    def version_number(self, obj):
        return obj.version.number

    def get_queryset(self, request):
        return selectors.deployments_for(request.user)


# --- schedules -------------------------------------------------------------------------------------------


class ScheduleRuleAdminMixin:
    """Schedules and triggers: adding one is open to whoever sees the list, and changing one follows
    the schedules' rule (services.require_schedule_edit: a locked stage needs more)."""

    def has_add_permission(self, request):
        return self.has_view_permission(request)

    def may_edit(self, request, obj) -> bool:
        if obj is None:
            return self.has_view_permission(request)  # type: ignore[attr-defined]
        try:
            services.require_schedule_edit(request.user, obj.environment)
        except DomainError:
            return False
        return True

    def has_change_permission(self, request, obj=None):
        return self.may_edit(request, obj)


class ScheduleAdminForm(forms.ModelForm):
    class Meta:
        model = Schedule
        fields = ["pipeline", "environment", "cron", "timezone", "enabled"]
        help_texts = {
            "cron": "Five fields, e.g. '0 6 * * 1-5' (06:00 on weekdays).",
            "enabled": "Leave unchecked on a new schedule to follow the deployment (deploying switches it on).",
        }


@admin.register(Schedule)
class ScheduleAdmin(ScheduleRuleAdminMixin, EnvironmentScopedAdminMixin, AuditedAdmin):
    form = ScheduleAdminForm
    list_display = ["pipeline", "environment", "cron", "timezone", "enabled", "owner", "last_fired_for"]
    list_filter = ["enabled", EnvironmentFilter, PipelineFilter]
    list_select_related = ["pipeline__project", "environment__organization", "owner"]
    search_fields = ["pipeline__slug", "environment__slug", "cron"]

    def get_queryset(self, request):
        return selectors.schedules_for(request.user)

    def has_delete_permission(self, request, obj=None):
        return False  # switch a schedule off instead; deleting goes through the API

    def get_readonly_fields(self, request, obj=None):
        return ["pipeline", "environment", "owner", "last_fired_for"] if obj is not None else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "environment":
            # Candidates only; services.require_schedule_edit decides (a locked stage needs manage_schedules).
            environments = Environment.objects.select_related("organization")
            kwargs["queryset"] = perms.environments_where(request.user, perms.MANAGE_SCHEDULES, environments) | (
                perms.environments_where(request.user, perms.CHANGE_CONFIG, environments)
            )
        elif db_field.name == "pipeline":
            kwargs["queryset"] = Pipeline.objects.restrict(request.user).select_related("project")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _save_kwargs(self, request, instance, cleaned_data) -> dict:
        changing = instance.pk is not None
        enabled = cleaned_data.get("enabled")
        return {
            "actor": request.user,
            "pipeline": instance.pipeline if changing else cleaned_data["pipeline"],
            "environment": instance.environment if changing else cleaned_data["environment"],
            "cron": cleaned_data["cron"],
            "timezone_name": cleaned_data["timezone"],
            # On a new schedule an unchecked box means "follow the deployment" (the service decides).
            "enabled": enabled if changing or enabled else None,
        }

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        if instance.pk is None and (cleaned_data.get("pipeline") is None or cleaned_data.get("environment") is None):
            return
        if not cleaned_data.get("cron") or not cleaned_data.get("timezone"):
            return
        current = Schedule.objects.get(pk=instance.pk) if instance.pk is not None else None
        dry_run(
            services.schedule_save, schedule=current, **self._save_kwargs(request, current or instance, cleaned_data)
        )

    def save_model(self, request, obj, form, change):
        current = Schedule.objects.get(pk=obj.pk) if change else None
        saved = services.schedule_save(
            schedule=current, **self._save_kwargs(request, current or obj, form.cleaned_data)
        )
        adopt(obj, saved)


# --- triggers --------------------------------------------------------------------------------------------


class PipelineTriggerAdminForm(forms.ModelForm):
    class Meta:
        model = PipelineTrigger
        fields = ["pipeline", "environment", "kind", "upstream_pipeline", "signing_secret", "enabled"]
        help_texts = {
            "enabled": "Leave unchecked on a new trigger to follow the deployment (on once deployed in production "
            "and protected stages, at once elsewhere).",
        }


@admin.register(PipelineTrigger)
class PipelineTriggerAdmin(ScheduleRuleAdminMixin, EnvironmentScopedAdminMixin, ServiceModelAdmin):
    """Triggers through the triggers service: the schedules' rule decides who may edit them."""

    form = PipelineTriggerAdminForm
    list_display = ["pipeline", "environment", "kind", "upstream_pipeline", "enabled", "owner", "updated_at"]
    list_filter = ["kind", "enabled", EnvironmentFilter, PipelineFilter]
    list_select_related = ["pipeline__project", "environment__organization", "upstream_pipeline__project", "owner"]
    search_fields = ["pipeline__slug", "upstream_pipeline__slug", "environment__slug"]
    readonly_fields = ["hook_url", "switched_on_by", "owner", "created_at", "updated_at"]
    create_requires = ("pipeline", "environment", "kind")

    def get_queryset(self, request):
        return selectors.triggers_for(request.user)

    def has_delete_permission(self, request, obj=None):
        return self.may_edit(request, obj)

    def get_readonly_fields(self, request, obj=None):
        fixed = ["pipeline", "environment", "kind"] if obj is not None else []
        return [*fixed, *self.readonly_fields]

    @admin.display(description="webhook URL")
    def hook_url(self, obj) -> str:
        return services.trigger_hook_url(obj) or "—" if obj.pk else "—"

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "environment":
            # Candidates only; services.require_schedule_edit decides (a locked stage needs manage_schedules).
            environments = Environment.objects.select_related("organization")
            kwargs["queryset"] = perms.environments_where(request.user, perms.MANAGE_SCHEDULES, environments) | (
                perms.environments_where(request.user, perms.CHANGE_CONFIG, environments)
            )
        elif db_field.name in ("pipeline", "upstream_pipeline"):
            kwargs["queryset"] = Pipeline.objects.restrict(request.user).select_related("project")
        elif db_field.name == "signing_secret":
            kwargs["queryset"] = Secret.objects.restrict(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def service_create(self, request, cleaned_data):
        return services.trigger_create(
            actor=request.user,
            pipeline=cleaned_data["pipeline"],
            environment=cleaned_data["environment"],
            kind=cleaned_data["kind"],
            upstream_pipeline=cleaned_data.get("upstream_pipeline"),
            signing_secret=cleaned_data.get("signing_secret"),
            # On a new trigger an unchecked box means "follow the deployment" (the service decides).
            enabled=True if cleaned_data.get("enabled") else None,
        )

    def service_update(self, request, obj, form):
        current = PipelineTrigger.objects.select_related("pipeline__project", "environment__policy").get(pk=obj.pk)
        data = form.cleaned_data
        return services.trigger_update(
            actor=request.user,
            trigger=current,
            enabled=data.get("enabled"),
            upstream_pipeline=data.get("upstream_pipeline"),
            signing_secret=data.get("signing_secret"),
        )

    def service_delete(self, request, obj) -> None:
        services.trigger_delete(actor=request.user, trigger=obj)
