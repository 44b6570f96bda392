"""Admin for variables: definitions with their per-environment overrides inline.

Every add, change and delete (of a variable or of an override row) goes through the services, so
typed values, the plaintext-credential guard, locks and the permission door hold here as form
errors, exactly as in the API. Override rows in environments the staff user may not edit are shown
read-only. Non-superuser staff see only their organizations' variables.

The "check readiness" and "export configuration" actions need apps.resolution, which sits above
this app, so apps/resolution/admin.py adds them to VariableAdmin."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.template.response import TemplateResponse

from apps.core.admin import AuditedAdmin, RowServices, ViewOnlyAdminMixin, add_domain_error
from apps.core.errors import DomainError
from apps.environments import permissions as perms
from apps.environments.admin_rows import (
    EnvironmentScopedAdminMixin,
    PerEnvironmentInlineForm,
    PerEnvironmentInlineMixin,
    ScopedDefinitionAdmin,
    required_in_field,
)
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline, Project
from apps.secrets.models import Secret
from apps.tenancy.models import Organization
from apps.tenancy.permissions import ADMIN

from . import services
from .forms import VALUE_HELP, text_to_value, value_to_text
from .models import VARIABLE_SETTINGS, PersonalOverride, Variable, VariableOverride

# --- overrides inline ---------------------------------------------------------------------------


class OverrideInlineForm(PerEnvironmentInlineForm):
    """One override row; validated by services.validate_override against the variable as edited."""

    value = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 1, "cols": 40}), help_text=VALUE_HELP
    )

    secret_field = "secret"

    class Meta:
        model = VariableOverride
        fields = ["environment", "value", "secret"]

    def show_instance(self) -> None:
        self.initial["value"] = value_to_text(self.parent.type, self.instance.value)

    def validate_row(self, environment, cleaned) -> None:
        value = text_to_value(self.parent.type, cleaned.get("value"), "value")
        cleaned["value"] = services.validate_override(
            actor=self.admin_request.user,
            variable=self.parent,
            environment=environment,
            value=value,
            secret=cleaned.get("secret"),
        )


class VariableOverrideInline(PerEnvironmentInlineMixin, admin.TabularInline):
    model = VariableOverride
    form = OverrideInlineForm
    row_name = "override"
    row_select_related = ("secret", "variable")


# --- variables ------------------------------------------------------------------------------------


class VariableAdminForm(forms.ModelForm):
    """Definition form: the default is typed by the chosen type (raw text for strings, JSON otherwise)."""

    default_value = forms.CharField(
        required=False, strip=False, widget=forms.Textarea(attrs={"rows": 2}), help_text=VALUE_HELP
    )
    required_in = required_in_field("Environment kinds where a value must exist before a run or promotion.")

    class Meta:
        model = Variable
        fields = ["organization", "project", "pipeline", "name", *VARIABLE_SETTINGS]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.instance.pk:
            self.initial["default_value"] = value_to_text(self.instance.type, self.instance.default_value)

    def clean(self):
        cleaned = super().clean()
        var_type = cleaned.get("type") or self.instance.type
        if "default_value" in cleaned:
            try:
                cleaned["default_value"] = text_to_value(var_type, cleaned["default_value"], "default_value")
            except DomainError as exc:
                add_domain_error(self, exc)
        pipeline = cleaned.get("pipeline")
        if pipeline is not None and not cleaned.get("project"):
            cleaned["project"] = pipeline.project
        return cleaned


class ScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request, model_admin):
        return [("organization", "Organization"), ("project", "Project"), ("pipeline", "Pipeline")]

    def queryset(self, request, queryset):
        if self.value() == "organization":
            return queryset.filter(project__isnull=True, pipeline__isnull=True)
        if self.value() == "project":
            return queryset.filter(project__isnull=False, pipeline__isnull=True)
        if self.value() == "pipeline":
            return queryset.filter(pipeline__isnull=False)
        return queryset


def _same_json(left, right) -> bool:
    left, right = getattr(left, "pk", left), getattr(right, "pk", right)
    return json.dumps(left, sort_keys=True, default=str) == json.dumps(right, sort_keys=True, default=str)


class CloneOverridesForm(forms.Form):
    source = forms.ModelChoiceField(queryset=Environment.objects.none(), help_text="Copy overrides from …")
    target = forms.ModelChoiceField(queryset=Environment.objects.none(), help_text="… into this environment.")
    replace = forms.BooleanField(required=False, help_text="Also replace overrides the target already has.")

    def __init__(self, *args, environments=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["source"].queryset = environments
        self.fields["target"].queryset = environments

    def clean(self):
        cleaned = super().clean()
        if cleaned.get("source") and cleaned.get("source") == cleaned.get("target"):
            self.add_error("target", "Choose an environment other than the source.")
        return cleaned


@admin.register(Variable)
class VariableAdmin(ScopedDefinitionAdmin):
    form = VariableAdminForm
    may_define = staticmethod(services.may_define)
    definition = RowServices("variable", services.variable_create, services.variable_update, services.variable_delete)
    rows = RowServices("override", services.variable_override_set, delete=services.variable_override_delete)
    row_fields = ("value", "secret")
    list_display = ["name", "scope", "type", "organization", "project", "pipeline", "required_in"]
    list_filter = [ScopeFilter, "type", "organization", "allow_runtime_override"]
    list_select_related = ["organization", "project", "pipeline__project"]
    search_fields = ["name", "description", "organization__slug", "project__slug", "pipeline__slug"]
    inlines = [VariableOverrideInline]
    # apps.resolution (above this app) adds "check readiness" and "export configuration".
    actions: list = ["clone_overrides"]  # apps.resolution.admin adds its two actions (functions)

    # --- forms ---

    def get_readonly_fields(self, request, obj=None):
        return ["organization", "project", "pipeline", "name"] if obj is not None else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        choices = {"organization": Organization, "project": Project, "pipeline": Pipeline, "default_secret": Secret}
        if db_field.name in choices:
            kwargs["queryset"] = choices[db_field.name].objects.restrict(request.user)
            if db_field.name == "pipeline":
                kwargs["queryset"] = kwargs["queryset"].select_related("project")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _definition(self, cleaned_data) -> dict:
        return {name: cleaned_data[name] for name in services.DEFINITION_FIELDS if name in cleaned_data}

    def definition_changes(self, current, cleaned_data) -> dict:
        return {
            name: value
            for name, value in self._definition(cleaned_data).items()
            if not _same_json(value, getattr(current, name))
        }

    def _create_kwargs(self, request, cleaned_data) -> dict:
        return {
            "actor": request.user,
            "organization": cleaned_data["organization"],
            "name": cleaned_data["name"],
            "project": cleaned_data.get("project"),
            "pipeline": cleaned_data.get("pipeline"),
            **self._definition(cleaned_data),
        }

    # --- actions ---

    def _single_organization(self, request, queryset) -> Organization | None:
        organization_ids = set(queryset.values_list("organization_id", flat=True))
        if len(organization_ids) != 1:
            self.message_user(request, "Select variables of one organization.", level=messages.ERROR)
            return None
        return Organization.objects.get(pk=organization_ids.pop())

    def _action_context(self, request, queryset, title) -> dict:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "queryset": queryset,
            "selected": [str(pk) for pk in queryset.values_list("pk", flat=True)],
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }

    @admin.action(description="Clone overrides from another environment")
    def clone_overrides(self, request, queryset):
        organization = self._single_organization(request, queryset)
        if organization is None:
            return None
        environments = perms.environments_where(
            request.user, perms.VIEW, Environment.objects.filter(organization=organization).select_related("policy")
        ).order_by("position")
        form = CloneOverridesForm(request.POST if "apply" in request.POST else None, environments=environments)
        if form.is_bound and form.is_valid():
            source, target = form.cleaned_data["source"], form.cleaned_data["target"]
            copied = self.run_service(
                request,
                services.overrides_clone,
                actor=request.user,
                source=source,
                target=target,
                variables=list(queryset),
                replace=form.cleaned_data["replace"],
            )
            if copied is not None:
                self.message_user(
                    request,
                    f"Copied {copied} override(s) from '{source.slug}' to '{target.slug}'.",
                    level=messages.SUCCESS,
                )
            return None
        context = self._action_context(request, queryset, "Clone overrides from another environment")
        context.update(form=form, organization=organization)
        return TemplateResponse(request, "admin/variables/variable/clone_overrides.html", context)


@admin.register(VariableOverride)
class VariableOverrideAdmin(ViewOnlyAdminMixin, EnvironmentScopedAdminMixin, AuditedAdmin):
    """Read-only list of overrides (with history); edit them inline under their variable."""

    list_display = ["variable", "environment", "value", "secret", "updated_at"]
    list_filter = ["environment__organization", "environment__kind", "variable__type"]
    list_select_related = ["variable", "environment__organization", "secret"]
    search_fields = ["variable__name", "environment__slug"]

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user)


@admin.register(PersonalOverride)
class PersonalOverrideAdmin(ViewOnlyAdminMixin, EnvironmentScopedAdminMixin, AuditedAdmin):
    """Read-only list of members' personal development values (with history), for administrators of
    the environment; members set and clear their own on the pipeline page or through the API."""

    environment_action = perms.MANAGE
    organization_role = ADMIN
    list_display = ["variable", "environment", "user", "value", "secret", "updated_at"]
    list_filter = ["environment__organization", "variable__type"]
    list_select_related = ["variable", "environment__organization", "user", "secret"]
    search_fields = ["variable__name", "environment__slug", "user__username"]

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, perms.MANAGE)
