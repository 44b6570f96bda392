"""Admin pieces for rows that live per environment: the inline of one row per environment under a
parent (a variable's overrides, a connection role's bindings, and any new "per environment" value
an app adds), the admin of such a parent (`ScopedDefinitionAdmin`), and the visibility of rows that
belong to an environment (`EnvironmentScopedAdminMixin`, `EnvironmentFilter`).

The inline shows the rows of the environments the staff user may view; a row in an environment
whose configuration the user may not edit now (rights or lock) is read-only and cannot be deleted;
a new row can only be for an environment the user may edit; two rows for one environment are
refused; each row is validated by the owning app's service (`validate_row`), and saved and deleted
through it (`save_per_environment_rows`), never by the formset.

To adopt: subclass `PerEnvironmentInlineForm` (Meta, `validate_row`, optionally `secret_field`,
`limit_choices`, `show_instance`, `place_error`) and mix `PerEnvironmentInlineMixin` into a
Tabular/StackedInline (`form`, `row_name`, `row_select_related`; the fields are the form's); the parent admin
(a `ScopedDefinitionAdmin`) saves the rows through `save_per_environment_rows` with its `rows`
services."""

from typing import Any, cast

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet

from apps.core.admin import RequestFormInlineMixin, RowServices, ServiceCheckedForm, ServiceModelAdmin
from apps.core.errors import DomainError
from apps.tenancy import permissions as org_perms
from apps.tenancy.permissions import is_org_member, sees_some_organization

from . import permissions as perms
from .models import Environment, Kind


def required_in_field(help_text: str) -> forms.MultipleChoiceField:
    """A definition's `required_in` (environment kinds where a value must exist) as checkboxes."""
    return forms.MultipleChoiceField(
        choices=Kind.choices, required=False, widget=forms.CheckboxSelectMultiple, help_text=help_text
    )


def editable_environments(user, organization_id) -> list[Environment]:
    """The organization's environments whose configuration `user` may edit now (locks included)."""
    candidates = perms.environments_where(
        user,
        perms.CHANGE_CONFIG,
        Environment.objects.filter(organization_id=organization_id).select_related("policy").order_by("position"),
    )
    return [environment for environment in candidates if perms.may_edit_config(user, environment)]


class PerEnvironmentInlineForm(ServiceCheckedForm):
    """One row of `parent` (the object being edited) for one environment. `secret_field`: the row's
    secret reference, whose choices are the parent organization's secrets."""

    secret_field = ""

    def __init__(self, *args, parent=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.parent = parent
        self.read_only = False
        user = self.admin_request.user
        organization_id = parent.organization_id if parent is not None else None
        self.limit_choices(organization_id)
        if self.instance.pk:
            environment = self.instance.environment
            self.fields["environment"].queryset = Environment.objects.filter(pk=environment.pk)
            self.fields["environment"].disabled = True
            self.show_instance()
            self.read_only = not perms.may_edit_config(user, environment)
            if self.read_only:
                for field in self.fields.values():
                    field.disabled = True
        else:
            editable = [e.pk for e in editable_environments(user, organization_id)] if organization_id else []
            self.fields["environment"].queryset = Environment.objects.filter(pk__in=editable).order_by("position")

    def limit_choices(self, organization_id) -> None:
        """Limit the row's other choices (secrets, ...) to the parent's organization."""
        if self.secret_field:
            field = cast(forms.ModelChoiceField, self.fields[self.secret_field])
            secrets = cast(QuerySet, field.queryset).model._default_manager  # all of them, not the admin's choice
            field.queryset = secrets.filter(organization_id=organization_id)

    def show_instance(self) -> None:
        """Set the initial values of form-only fields from the saved row."""

    def validate_row(self, environment, cleaned) -> None:
        """Ask the service whether this row may be saved; raise its DomainError (may edit `cleaned`)."""
        raise NotImplementedError

    def service_check(self, cleaned) -> None:
        if self.read_only or not self.has_changed() or cleaned.get("DELETE"):
            return
        environment = cleaned.get("environment")
        if environment is not None:
            self.validate_row(environment, cleaned)


class PerEnvironmentFormSet(BaseInlineFormSet):
    """Hands each row the parent being edited; read-only rows cannot be deleted; deletions are
    checked with the permission door (locks included); one row per environment."""

    row_name = "row"

    def get_form_kwargs(self, index):
        kwargs = super().get_form_kwargs(index)
        kwargs["parent"] = self.instance
        return kwargs

    def add_fields(self, form, index):
        super().add_fields(form, index)
        if getattr(form, "read_only", False) and "DELETE" in form.fields:
            form.fields["DELETE"].disabled = True

    def clean(self):
        super().clean()
        user = self.form.admin_request.user
        seen = set()
        for form in self.forms:
            if not hasattr(form, "cleaned_data"):
                continue
            if self._should_delete_form(form):
                if form.instance.pk:
                    try:
                        perms.require_config_edit(user, form.instance.environment)
                    except DomainError as exc:
                        raise ValidationError(exc.message) from exc
                continue
            environment = form.cleaned_data.get("environment")
            if environment is not None:
                if environment.pk in seen:
                    form.add_error("environment", f"One {self.row_name} per environment: this one is given twice.")
                seen.add(environment.pk)


class PerEnvironmentInlineMixin(RequestFormInlineMixin):
    """For a Tabular/StackedInline of per-environment rows: visible rows only, the request on the
    form, and add/change/delete only for a user who may edit some environment of the parent's
    organization (the parent admin decided that the parent is visible)."""

    extra = 1
    formset: type[BaseInlineFormSet] = PerEnvironmentFormSet
    row_name = "row"  # in the formset's "one <row_name> per environment" error
    row_select_related: tuple[str, ...] = ()

    def get_fields(self, request, obj=None):
        return list(self.form._meta.fields)  # a PerEnvironmentInlineForm: its Meta's

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        formset.row_name = self.row_name
        return formset

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .restrict(request.user)
            .select_related("environment__policy", "environment__organization", *self.row_select_related)
        )

    def _edits_some_environment(self, request, obj) -> bool:
        return obj is None or bool(editable_environments(request.user, obj.organization_id))

    def has_view_permission(self, request, obj=None):
        return True  # the parent's admin decided that the parent is visible; rows are filtered above

    def has_add_permission(self, request, obj=None):
        return obj is not None and self._edits_some_environment(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._edits_some_environment(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._edits_some_environment(request, obj)


def save_per_environment_rows(formset, *, load, set_row, delete_row) -> None:
    """Save a PerEnvironmentFormSet through the services: `set_row(environment, cleaned_data)` for a
    changed or new row (returns it), `delete_row(load(pk))` for a deleted one; read-only rows are
    skipped. The formset's new/changed/deleted lists say what was done (for the change message)."""
    formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
    deleted = formset.deleted_forms
    for inline_form in formset.initial_forms:
        if inline_form.read_only:
            continue
        if inline_form in deleted:
            row = load(inline_form.instance.pk)
            delete_row(row)
            formset.deleted_objects.append(row)
        elif inline_form.has_changed():
            row = set_row(inline_form.instance.environment, inline_form.cleaned_data)
            formset.changed_objects.append((row, inline_form.changed_data))
    for inline_form in formset.extra_forms:
        if inline_form in deleted or not inline_form.has_changed():
            continue
        formset.new_objects.append(set_row(inline_form.cleaned_data["environment"], inline_form.cleaned_data))


class ScopedDefinitionAdmin(ServiceModelAdmin):
    """The admin of a definition made at organization or project scope whose values per environment
    are edited inline (a variable and its overrides, a connection role and its bindings): members of
    the row's organization see it, `may_define(user, organization, project)` (the app's service
    answer) decides who changes and deletes it, the inline appears once the row exists, and every
    write goes through the services.

    A subclass sets `may_define`, `definition` (the definition's create/update/delete services),
    `rows` (its rows' set/delete services) and `row_fields` (what a row's set takes besides the
    definition and the environment), and writes `_create_kwargs(request, cleaned_data)` and
    `definition_changes(current, cleaned_data)` (the changed fields, as the update service takes
    them). The delete services decide who may delete a definition with its rows (the lock on each
    environment), not the admin's per-model delete permissions."""

    create_requires = ("organization",)
    may_define: Any = None  # staticmethod: the app's services.may_define
    definition: RowServices
    rows: RowServices
    row_fields: tuple[str, ...] = ()

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            return is_org_member(request.user, obj.organization_id)
        return sees_some_organization(request.user)

    def has_add_permission(self, request):
        return self.has_view_permission(request)

    def has_change_permission(self, request, obj=None):
        if obj is None:
            return self.has_view_permission(request)
        return self.may_define(request.user, obj.organization, obj.project)

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletes go one by one through the delete service
        return actions

    def get_inlines(self, request, obj):
        # The rows are validated against the saved definition: add them once it exists.
        return [] if obj is None else self.inlines

    def _create_kwargs(self, request, cleaned_data) -> dict:
        raise NotImplementedError

    def definition_changes(self, current, cleaned_data) -> dict:
        raise NotImplementedError

    def service_create(self, request, cleaned_data):
        return self.definition.create(**self._create_kwargs(request, cleaned_data))

    def service_update(self, request, obj, form):
        current = self.model._default_manager.get(pk=obj.pk)
        changes = self.definition_changes(current, form.cleaned_data)
        if not changes:
            return current
        return self.definition.update(actor=request.user, **{self.definition.name: obj}, **changes)

    def service_delete(self, request, obj) -> None:
        self.definition.delete(actor=request.user, **{self.definition.name: obj})

    def row_set(self, request, parent, environment, cleaned_data):
        fields = {name: cleaned_data.get(name) for name in self.row_fields}
        return self.rows.create(actor=request.user, **{self.definition.name: parent}, environment=environment, **fields)

    def row_delete(self, request, row) -> None:
        self.rows.delete(actor=request.user, **{self.rows.name: row})

    def save_related(self, request, form, formsets, change):
        for formset in formsets:
            self.save_formset(request, form, formset, change)

    def save_formset(self, request, form, formset, change):
        parent_field = formset.fk.name
        save_per_environment_rows(
            formset,
            load=lambda pk: formset.model._default_manager.select_related(parent_field, "environment__policy").get(
                pk=pk
            ),
            set_row=lambda environment, data: self.row_set(request, form.instance, environment, data),
            delete_row=lambda row: self.row_delete(request, row),
        )


def visible_environments(user):
    """The environments `user` may view, by organization and stage (for admin choices and filters)."""
    return perms.environments_where(user, perms.VIEW, Environment.objects.select_related("organization")).order_by(
        "organization__slug", "position"
    )


class EnvironmentFilter(admin.SimpleListFilter):
    """Only the environments the staff user may view."""

    title = "environment"
    parameter_name = "environment"

    def lookups(self, request, model_admin):
        return [(str(e.pk), f"{e.organization.slug}/{e.slug}") for e in visible_environments(request.user)]

    def queryset(self, request, queryset):
        value = self.value()
        return queryset.filter(environment_id=value) if value and value.isdigit() else queryset


class EnvironmentScopedAdminMixin:
    """Rows that belong to an environment (`environment_of(obj)`): a row is visible to whoever may
    view its environment; the module is there for members of some organization (superusers: all;
    the querysets come from the selectors). `environment_action` / `organization_role`: what seeing a
    row / the module takes, when more than viewing / membership."""

    environment_action = perms.VIEW
    organization_role = org_perms.VIEW

    def environment_of(self, obj) -> Environment:
        return obj.environment

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            return perms.may(request.user, self.environment_action, self.environment_of(obj))
        return sees_some_organization(request.user, self.organization_role)
