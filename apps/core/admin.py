"""Admin base: history on every audited model and services as the single path for writes."""

import copy
import json
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, NamedTuple

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets, unquote
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import transaction
from django.forms import modelform_factory
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html
from simple_history.admin import SimpleHistoryAdmin

from .errors import DomainError
from .models import without_blobs


class LightChangeList(ChangeList):
    """A changelist that never loads the model's heavy columns and always follows
    `list_select_related` (Django drops it when `get_queryset` already has a select_related, which
    permission-filtered selectors do), so every `__str__` a row renders is in the one query."""

    def get_queryset(self, request, exclude_parameters=None):
        queryset = super().get_queryset(request, exclude_parameters)
        if isinstance(self.list_select_related, list | tuple) and self.list_select_related:
            queryset = queryset.select_related(*self.list_select_related)
        return without_blobs(queryset)


class LightChangelistMixin:
    """Every model admin's changelist is a LightChangeList."""

    def get_changelist(self, request, **kwargs):
        return LightChangeList


class ServiceActionMixin:
    """Admin actions that call services: a refusal is a message, not a 500."""

    def run_service(self, request, func, *args, **kwargs):
        """Call a service from an admin action and report a domain error as a message."""
        try:
            return func(*args, **kwargs)
        except DomainError as exc:
            self.message_user(request, exc.message, level=messages.ERROR)  # type: ignore[attr-defined]
            return None


class LightModelAdmin(LightChangelistMixin, admin.ModelAdmin):
    """ModelAdmin with a LightChangeList."""


class RequestFormInlineMixin:
    """An inline whose forms know the admin request (`form.admin_request`), for the services'
    `actor=` in their clean()."""

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)  # type: ignore[misc]
        formset.form = type(formset.form.__name__, (formset.form,), {"admin_request": request})
        return formset


class RowServices(NamedTuple):
    """A row's services and the keyword (`name`) they take the row by: `create(actor=, **fields)`,
    `update(actor=, <name>=row, **changes)`, `delete(actor=, <name>=row)` (for a per-environment
    row, `create` is its set service)."""

    name: str
    create: Callable
    update: Any = None  # None: the row has no such service
    delete: Any = None


def changed_fields(form, editable) -> dict:
    """The `editable` fields the admin form changed, with their cleaned values (an update service's changes)."""
    return {name: form.cleaned_data.get(name) for name in form.changed_data if name in editable}


def _aggregate_column(name: str):
    def column(self, obj):
        return getattr(obj, name)

    return column


if TYPE_CHECKING:
    _ModelAdminBase = admin.ModelAdmin
else:
    _ModelAdminBase = object


class AggregateColumnsMixin(_ModelAdminBase):
    """Changelist columns that aggregate a row's relations (a count, a latest number) in the list's
    one query: `aggregate_columns = {name: (description, expression)}` annotates each under its name
    and makes it a sortable column (put the mixin first among the bases)."""

    aggregate_columns: dict[str, tuple[str, Any]] = {}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name, (description, _) in cls.__dict__.get("aggregate_columns", {}).items():
            setattr(cls, name, admin.display(description=description, ordering=name)(_aggregate_column(name)))

    def get_queryset(self, request):
        columns = {name: expression for name, (_, expression) in self.aggregate_columns.items()}
        return super().get_queryset(request).annotate(**columns)


def pretty_json(value) -> str:
    """A JSON value for a read-only admin field: indented in a <pre>, "—" when empty."""
    if value in (None, {}, []):
        return "—"
    return format_html("<pre>{}</pre>", json.dumps(value, indent=2, sort_keys=True, default=str))


def add_domain_error(form, exc: DomainError) -> None:
    """Put a domain error on the form: on the fields it names where the form has them."""
    placed = False
    for name, messages_ in exc.fields.items():
        if name in form.fields:
            for message in messages_:
                form.add_error(name, message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


if TYPE_CHECKING:
    _ModelFormBase = forms.ModelForm
else:
    _ModelFormBase = object


class ServiceFormMixin(_ModelFormBase):
    """A ModelForm whose clean() asks the admin to validate through the services, so that rules
    (limits, naming, editions, locks) refuse bad input as form errors instead of 500s."""

    admin_request = None
    model_admin = None

    def clean(self):
        cleaned = super().clean()
        if not self.errors and self.model_admin is not None:
            try:
                self.model_admin.service_validate(self.admin_request, self.instance, cleaned, self)
            except DomainError as exc:
                add_domain_error(self, exc)
        return cleaned


class ServiceCheckedForm(forms.ModelForm):
    """An inline row's form whose clean() asks the services (`service_check(cleaned)`) once the
    fields are valid; a DomainError becomes a form error (`place_error`), never a 500. The admin
    request is `admin_request` (set by RequestFormInlineMixin)."""

    admin_request: Any = None

    def service_check(self, cleaned) -> None:
        """Raise the DomainError the services would raise for this row (may edit `cleaned`)."""
        raise NotImplementedError

    def place_error(self, exc: DomainError) -> None:
        add_domain_error(self, exc)

    def clean(self):
        cleaned = super().clean()
        if not self.errors:
            try:
                self.service_check(cleaned)
            except DomainError as exc:
                self.place_error(exc)
        return cleaned


class AuditedAdmin(ServiceActionMixin, LightChangelistMixin, SimpleHistoryAdmin):
    """ModelAdmin with history. Subclasses implement `service_validate` (called from the form's
    clean) and `save_model`/`delete_model` through services. JSON columns are edited as strict JSON."""

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        if issubclass(form, ServiceFormMixin):
            return type(form.__name__, (form,), {"admin_request": request, "model_admin": self})
        return type(form.__name__, (ServiceFormMixin, form), {"admin_request": request, "model_admin": self})

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        """Override to check the change with the services before save_model runs."""

    def history_form_view(self, request, object_id, version_id, extra_context=None):
        """A past version, shown read-only. simple-history renders it with the add form's
        `prepopulated_fields` and with an editable form (a 500 when a field is not editable, or not on
        the change form), and would save a POST past the services; so it renders through a copy of
        this admin where every field is read-only and nothing is prepopulated, and POSTs are refused."""
        if request.method == "POST":
            raise DjangoPermissionDenied
        current = self.get_object(request, unquote(object_id))
        columns = {field.name for field in self.model._meta.get_fields()}
        shown = [
            name
            for name in flatten_fieldsets(self.get_fieldsets(request, current))
            if name in columns or hasattr(self, name) or hasattr(self.model, name)  # not form-only fields
        ]
        view = copy.copy(self)
        view.prepopulated_fields = {}
        view.get_fieldsets = lambda request, obj=None: [(None, {"fields": shown})]
        view.get_readonly_fields = lambda request, obj=None: shown
        view.get_form = lambda request, obj=None, **kwargs: modelform_factory(  # type: ignore[method-assign]
            self.model, fields=[]
        )  # on the copy only: the read-only history page's form has no fields
        return super(AuditedAdmin, view).history_form_view(request, object_id, version_id, extra_context)


class IsSetListFilter(admin.SimpleListFilter):
    """A list filter on whether a column is set (read / unread, revoked / not revoked): a subclass
    names the column (`field`) and the two choices, each (parameter value, label)."""

    field = ""
    is_set: tuple[str, str] = ("yes", "Yes")
    is_unset: tuple[str, str] = ("no", "No")

    @classmethod
    def on(cls, field: str, title: str, is_set: tuple[str, str], is_unset: tuple[str, str]) -> type["IsSetListFilter"]:
        """The filter on `field`, titled (and named in the URL) `title`."""
        attrs = {"field": field, "title": title, "parameter_name": title, "is_set": is_set, "is_unset": is_unset}
        return type(f"{title.title()}IsSetListFilter", (cls,), attrs)

    def lookups(self, request, model_admin):
        return [self.is_set, self.is_unset]

    def queryset(self, request, queryset):
        if self.value() == self.is_set[0]:
            return queryset.filter(**{f"{self.field}__isnull": False})
        if self.value() == self.is_unset[0]:
            return queryset.filter(**{f"{self.field}__isnull": True})
        return queryset


def _restricted(model) -> bool:
    return model is not None and hasattr(model._default_manager, "restrict")


class VisibleRelatedFieldListFilter(admin.RelatedFieldListFilter):
    """A "By <related object>" list filter whose choices come from
    `Model.objects.restrict(user)`: filtering the rows is not enough, the filter must not name
    another tenant's organizations, environments or projects either. Registered (below) for every
    relation to a tenant-scoped model, so a plain `list_filter = ["organization"]` is safe."""

    def field_choices(self, field, request, model_admin):
        rows = field.related_model._default_manager.restrict(request.user)
        ordering = self.field_admin_ordering(field, request, model_admin)
        if ordering:
            rows = rows.order_by(*ordering)
        target = field.target_field.attname if hasattr(field, "target_field") else "pk"
        return [(getattr(row, target), str(row)) for row in rows]


admin.FieldListFilter.register(
    lambda f: f.is_relation and not f.auto_created and _restricted(f.related_model),
    VisibleRelatedFieldListFilter,
    take_priority=True,
)


class _DryRun(Exception):
    """Raised to roll back a service call made only to validate a form."""


def dry_run(func, **kwargs) -> None:
    """Call a service in a savepoint that is always rolled back: its DomainError reaches the caller
    (the form shows it), its writes never happen. Admin forms validate through the real services
    this way, so no rule is restated in the admin."""
    try:
        with transaction.atomic():
            func(**kwargs)
            raise _DryRun
    except _DryRun:
        pass


def adopt(obj, saved) -> None:
    """Make the admin's form instance the row the service saved (for log entries, inlines, redirects)."""
    for field in obj._meta.concrete_fields:
        setattr(obj, field.attname, getattr(saved, field.attname))
    obj._state.adding = False
    obj._state.db = saved._state.db


class ServiceModelAdmin(AuditedAdmin):
    """An audited admin whose writes all go through the model's services. A subclass writes the
    three hooks it needs; the base does the rest, the same way for every model:

    - `service_create(request, cleaned_data)` / `service_update(request, obj, form)` return the
      saved row (None: nothing to save). The form's clean() runs the same hook in a rolled-back
      savepoint (`dry_run`), so a DomainError is a form error on the field it names, never a 500;
      `save_model` then runs it for real and makes the admin's `obj` the saved row.
      `create_requires` names cleaned fields without which the create is not tried (they already
      carry their own form error).
    - `service_delete(request, obj)`: the delete page, `delete_model` and the bulk action all use
      it; a refusal is a message on the change page before Django's confirmation acts. The service
      decides who may delete the rows that go with the object (`service_decides_cascade`), not the
      per-model delete permissions of the admin.
    - Reverting from history is refused (AuditedAdmin), since it would save past the services.
    """

    create_requires: tuple[str, ...] = ()
    service_decides_cascade = True

    def service_create(self, request, cleaned_data):
        raise NotImplementedError(f"{type(self).__name__} creates no rows")

    def service_update(self, request, obj, form):
        raise NotImplementedError(f"{type(self).__name__} changes no rows")

    def service_delete(self, request, obj) -> None:
        raise NotImplementedError(f"{type(self).__name__} deletes no rows")

    def service_dry_run(self, request, func, **kwargs) -> None:
        """`dry_run` for this admin (an admin whose services cache on the user forgets it here)."""
        dry_run(func, **kwargs)

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        if instance.pk is None:
            if all(cleaned_data.get(name) is not None for name in self.create_requires):
                self.service_dry_run(request, partial(self.service_create, request, cleaned_data))
        else:
            self.service_dry_run(request, partial(self.service_update, request, instance, form))

    def save_model(self, request, obj, form, change):
        saved = self.service_update(request, obj, form) if change else self.service_create(request, form.cleaned_data)
        if saved is not None:
            adopt(obj, saved)

    def service_delete_check(self, request, obj) -> None:
        """Raise the DomainError deleting `obj` would raise (default: the delete service, rolled back)."""
        self.service_dry_run(request, partial(self.service_delete, request, obj))

    def delete_refused_response(self, request, obj):
        """Where a refused delete lands (default: the object's change page, the message on top)."""
        opts = self.model._meta
        return HttpResponseRedirect(
            reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk], current_app=self.admin_site.name)
        )

    def delete_view(self, request, object_id, extra_context=None):
        """Refuse (with a message) what the delete service refuses, before the confirmation acts."""
        if request.method == "POST":
            obj = self.get_object(request, unquote(object_id))
            if obj is not None and self.has_delete_permission(request, obj):
                try:
                    self.service_delete_check(request, obj)
                except DomainError as exc:
                    self.message_user(request, exc.message, level=messages.ERROR)
                    return self.delete_refused_response(request, obj)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request, obj):
        self.service_delete(request, obj)

    def delete_queryset(self, request, queryset):
        for obj in queryset:
            self.run_service(request, self.service_delete, request, obj)

    def get_deleted_objects(self, objs, request):
        deleted, model_count, perms_needed, protected = super().get_deleted_objects(objs, request)
        return deleted, model_count, set() if self.service_decides_cascade else perms_needed, protected


class ViewOnlyAdminMixin:
    """No add, change or delete on this page (admins and inlines; put it first among the bases):
    the rows are written by the services, or edited elsewhere. Actions stay."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


class ReadOnlyAdminMixin(ViewOnlyAdminMixin):
    """Rows written only by the services (or a library): administrators look, they do not edit,
    and there are no actions."""

    def get_actions(self, request):
        return {}


def formsets_saved_by_services(formsets) -> None:
    """For a `save_related` that leaves related rows to the services: the admin's change message
    reads what each formset saved, so say "nothing" instead of letting it fail after the save."""
    for formset in formsets:
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
