"""Admin for approval rules (added, changed and deleted through services.rule_save/rule_delete, so
the tighten-never-loosen rule and the permission door hold here as form errors, exactly as in the
API) and for promotion requests (read-mostly: the frozen plan, decisions and rule status are shown;
the only actions are "cancel" and "retry", through the services).

Approving, rejecting and deploying are deliberately absent: decisions are made against the plan an
approver saw, on the approval screens or the API, and deploying is the worker's job.

Non-superuser staff see only rules and requests of environments they may view."""

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db.models import Q
from django.utils.html import format_html_join

from apps.core.admin import (
    AuditedAdmin,
    ServiceModelAdmin,
    ViewOnlyAdminMixin,
    dry_run,
    formsets_saved_by_services,
    pretty_json,
)
from apps.environments import permissions as perms
from apps.environments.admin_rows import EnvironmentFilter, EnvironmentScopedAdminMixin, visible_environments
from apps.environments.models import Environment, EnvironmentGroupObjectPermission
from apps.pipelines.models import Project
from apps.runs.admin import PipelineFilter
from apps.tenancy.permissions import (
    is_org_admin,
    organization_ids_where,
    sees_all,
)

from . import selectors, services
from .models import ApprovalDecision, ApprovalRule, Decision, PromotionRequest

# --- approval rules ----------------------------------------------------------------------------------


def may_administer_rule(user, rule: ApprovalRule) -> bool:
    """Organization-wide rules are the organization admins'; a project's need manage_environment
    (services.rule_save decides; this only shapes the pages)."""
    if rule.project_id is None:
        return is_org_admin(user, rule.environment.organization_id)
    return perms.may(user, perms.MANAGE, rule.environment)


class ProjectFilter(admin.SimpleListFilter):
    """Organization-wide rules, or the rules of one project (of the staff user's organizations)."""

    title = "project"
    parameter_name = "project"
    ORGANIZATION_WIDE = "none"

    def lookups(self, request, model_admin):
        projects = Project.objects.restrict(request.user).select_related("organization")
        projects = projects.order_by("organization__slug", "slug")
        return [(self.ORGANIZATION_WIDE, "Organization-wide"), *((str(p.pk), str(p)) for p in projects)]

    def queryset(self, request, queryset):
        value = self.value()
        if value == self.ORGANIZATION_WIDE:
            return queryset.filter(project__isnull=True)
        return queryset.filter(project_id=value) if value and value.isdigit() else queryset


class ApprovalRuleAdminForm(forms.ModelForm):
    class Meta:
        model = ApprovalRule
        fields = [
            "environment",
            "project",
            "name",
            "is_active",
            "required_approvals",
            "approver_group",
            "approver_users",
            "allow_self_approval",
            "exclude_version_author",
            "require_validation",
            "validation_max_age_hours",
            "require_data_diff",
            "require_git",
            "allowed_refs",
            "require_ticket",
            "wait_minutes",
            "expires_after_hours",
            "extra_sources",
        ]
        help_texts = {
            "project": "Empty: the organization's default rule for every project (organization admins only). "
            "A project rule may tighten the organization's rules, never loosen them.",
        }


M2M_FIELDS = ("approver_users", "extra_sources")


@admin.register(ApprovalRule)
class ApprovalRuleAdmin(EnvironmentScopedAdminMixin, ServiceModelAdmin):
    form = ApprovalRuleAdminForm
    list_display = [
        "name",
        "environment",
        "scope",
        "is_active",
        "required_approvals",
        "allow_self_approval",
        "require_validation",
        "require_git",
        "wait_minutes",
        "expires_after_hours",
    ]
    list_filter = ["is_active", EnvironmentFilter, ProjectFilter, "require_validation", "environment__kind"]
    list_select_related = ["environment__organization", "project", "organization", "approver_group"]
    search_fields = ["name", "environment__slug", "project__slug", "organization__slug", "require_ticket"]
    filter_horizontal = list(M2M_FIELDS)

    def environment_of(self, obj):
        return obj.environment

    @admin.display(description="scope", ordering="project__slug")
    def scope(self, obj):
        return obj.project.slug if obj.project_id else "organization-wide"

    # --- who sees and changes what ---

    def get_queryset(self, request):
        return selectors.rules_for_user(request.user).select_related(*self.list_select_related)

    def has_add_permission(self, request):
        # Asked several times per page (sidebar, buttons): answered once per request.
        if not hasattr(request, "_manages_an_environment"):
            user = request.user
            request._manages_an_environment = sees_all(user) or perms.holds_anywhere(user, perms.MANAGE)
        return request._manages_an_environment

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return self.has_add_permission(request)
        return may_administer_rule(request.user, obj)

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def get_readonly_fields(self, request, obj=None):
        return ["organization", "created_at", "updated_at"] if obj is not None else []

    def get_fields(self, request, obj=None):
        fields = list(ApprovalRuleAdminForm.Meta.fields)
        return fields if obj is None else ["organization", *fields, "created_at", "updated_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        user = request.user
        ids = organization_ids_where(user)
        if db_field.name == "environment":
            # Candidates only: rule_save decides (organization-wide rules need an organization admin).
            kwargs["queryset"] = perms.environments_where(
                user, perms.MANAGE, Environment.objects.select_related("organization")
            ).order_by("organization__slug", "position")
        elif db_field.name == "project":
            kwargs["queryset"] = Project.objects.restrict(user).select_related("organization")
        elif db_field.name == "approver_group" and ids is not None:
            # Groups are global in Django: offer those already used in the user's organizations.
            granted = EnvironmentGroupObjectPermission.objects.filter(content_object__organization_id__in=ids).values(
                "group_id"
            )
            used = ApprovalRule.objects.filter(organization_id__in=ids).values("approver_group_id")
            kwargs["queryset"] = Group.objects.filter(Q(pk__in=granted) | Q(pk__in=used))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        ids = organization_ids_where(request.user)
        if db_field.name == "approver_users":
            users = get_user_model().objects.filter(is_active=True).order_by("username")
            kwargs["queryset"] = users if ids is None else users.filter(memberships__organization_id__in=ids).distinct()
        elif db_field.name == "extra_sources":
            kwargs["queryset"] = visible_environments(request.user)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    # --- saving through the services ---

    def _draft(self, instance, cleaned_data) -> ApprovalRule:
        """The rule as the form would save it, on a fresh object (the form's instance stays untouched)."""
        draft = ApprovalRule.objects.get(pk=instance.pk) if instance.pk else ApprovalRule()
        for name, value in cleaned_data.items():
            if name in ApprovalRuleAdminForm.Meta.fields and name not in M2M_FIELDS:
                setattr(draft, name, value)
        return draft

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        if cleaned_data.get("environment") is None and instance.pk is None:
            return
        dry_run(
            services.rule_save,
            actor=request.user,
            rule=self._draft(instance, cleaned_data),
            approver_users=list(cleaned_data.get("approver_users") or []),
            extra_sources=list(cleaned_data.get("extra_sources") or []),
        )

    def save_model(self, request, obj, form, change):
        services.rule_save(
            actor=request.user,
            rule=obj,
            approver_users=list(form.cleaned_data.get("approver_users") or []),
            extra_sources=list(form.cleaned_data.get("extra_sources") or []),
            reason="changed in the admin" if change else "added in the admin",
        )

    def save_related(self, request, form, formsets, change):
        """rule_save already set the approvers and extra sources."""
        formsets_saved_by_services(formsets)

    def service_delete(self, request, obj) -> None:
        # rule_delete decides who may delete (organization admin or manage_environment), not the
        # per-model delete permissions of the admin.
        services.rule_delete(actor=request.user, rule=obj)

    def delete_queryset(self, request, queryset):
        super().delete_queryset(request, queryset.select_related("environment__organization"))


# --- promotion requests -----------------------------------------------------------------------------------


class TargetFilter(EnvironmentFilter):
    """Only the target environments the staff user may view."""

    title = "target"
    parameter_name = "target"

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(target_id=value) if value and value.isdigit() else queryset


class DecisionInline(ViewOnlyAdminMixin, admin.TabularInline):
    """Decisions are made on the approval screens or the API (against the plan shown there)."""

    model = ApprovalDecision
    fields = ["approver", "decision", "comment", "plan_hash", "counts", "decided_at"]
    readonly_fields = fields  # type: ignore[assignment]  # all strings; the stubs type `fields` wider
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("approver", "request")

    @admin.display(description="against the current plan", boolean=True)
    def counts(self, obj):
        return obj.plan_hash == obj.request.plan_hash

    def has_view_permission(self, request, obj=None):
        return obj is None or perms.may(request.user, perms.VIEW, obj.target)


PROMOTION_FIELDS = [
    "pipeline",
    "version_number",
    "source",
    "target",
    "state",
    "requested_by",
    "reason",
    "ticket",
    "compare_url",
    "attached_runs_display",
    "created_at",
    "expires_at",
    "approved_at",
    "deploy_after",
    "decided_at",
    "deployed_at",
    "deployment",
    "blocked_reason",
    "failure_reason",
    "attempts",
    "watch_state",
    "freeze_override_reason",
    "freeze_override_requested_by",
    "freeze_override_confirmed_by",
    "freeze_override_at",
    "idempotency_key",
    "rule_status_display",
    "plan_hash",
    "plan_frozen_at",
    "plan_display",
]


@admin.register(PromotionRequest)
class PromotionRequestAdmin(ViewOnlyAdminMixin, EnvironmentScopedAdminMixin, AuditedAdmin):
    """Read-mostly: requests are created, decided and deployed through the API, the screens and the
    worker; here they are read, cancelled or retried."""

    list_display = [
        "id",
        "pipeline",
        "version_number",
        "source",
        "target",
        "state",
        "approvals",
        "requested_by",
        "created_at",
        "deployed_at",
    ]
    list_display_links = ["id", "pipeline"]
    list_filter = ["state", TargetFilter, PipelineFilter, "target__kind", "watch_state"]
    list_select_related = [
        "pipeline__project",
        "version",
        "source__organization",
        "target__organization",
        "requested_by",
    ]
    search_fields = [
        "pipeline__slug",
        "pipeline__project__slug",
        "source__slug",
        "target__slug",
        "requested_by__username",
        "reason",
        "ticket",
    ]
    date_hierarchy = "created_at"
    fields = PROMOTION_FIELDS
    readonly_fields = PROMOTION_FIELDS
    inlines = [DecisionInline]
    actions = ["cancel_requests", "retry_requests"]

    def environment_of(self, obj):
        return obj.target

    def get_queryset(self, request):
        # The changelist ignores list_select_related once a queryset has select_related: name it all here.
        return selectors.promotions_for(request.user).select_related(*self.list_select_related)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- displays ---

    @admin.display(description="version", ordering="version__number")
    def version_number(self, obj):
        return obj.version.number

    @admin.display(description="approvals (current plan)")
    def approvals(self, obj):
        # `decisions` is prefetched by the selector: no query per row.
        return sum(1 for d in obj.decisions.all() if d.decision == Decision.APPROVE and d.plan_hash == obj.plan_hash)

    @admin.display(description="attached runs")
    def attached_runs_display(self, obj):
        runs = list(obj.attached_runs.all())
        if not runs:
            return "—"
        return format_html_join(", ", "#{} ({})", ((run.pk, run.status) for run in runs))

    @admin.display(description="rules")
    def rule_status_display(self, obj):
        # The rule status checks each approver's permissions: read them all at once.
        perms.prefetch([d.approver for d in obj.decisions.all()])
        return pretty_json(services.rule_status(obj))

    @admin.display(description="plan (frozen; secrets as references)")
    def plan_display(self, obj):
        return pretty_json(obj.plan)

    # --- actions (through the services) ---

    def _act(self, request, queryset, service, action):
        """Offer each selected request to the service only if promotion_actions allows `action`."""
        done = 0
        for promotion in queryset:
            answer = services.promotion_actions(request.user, promotion)[action]
            if not answer.allowed:
                message = f"Request #{promotion.pk}: cannot {action} it: {'; '.join(answer.reasons)}."
                self.message_user(request, message, level=messages.WARNING)
                continue
            # (the services' `request` keyword would clash with run_service's HTTP request argument)
            if self.run_service(request, lambda p=promotion: service(actor=request.user, request=p)) is not None:
                done += 1
        if done:
            self.message_user(request, f"{action.capitalize()}: {done} request(s).", level=messages.SUCCESS)

    @admin.action(description="Cancel selected requests (pending or approved)")
    def cancel_requests(self, request, queryset):
        self._act(request, queryset, services.promotion_cancel, "cancel")

    @admin.action(description="Retry selected failed requests")
    def retry_requests(self, request, queryset):
        self._act(request, queryset, services.promotion_retry, "retry")


@admin.register(ApprovalDecision)
class ApprovalDecisionAdmin(ViewOnlyAdminMixin, EnvironmentScopedAdminMixin, AuditedAdmin):
    """Read-only list of decisions with their history (they are made on the screens or the API)."""

    list_display = ["request", "approver", "decision", "decided_at", "plan_hash"]
    list_filter = ["decision"]
    list_select_related = [
        "approver",
        "request__pipeline__project",
        "request__version",
        "request__source",
        "request__target",
    ]
    search_fields = ["approver__username", "comment", "request__pipeline__slug"]
    fields = ["request", "approver", "decision", "comment", "plan_hash", "decided_at"]
    readonly_fields = fields

    def environment_of(self, obj):
        return obj.request.target

    def get_queryset(self, request):
        visible = selectors.promotions_for(request.user).values("pk")
        return super().get_queryset(request).filter(request_id__in=visible)
