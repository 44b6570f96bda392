"""Admin for connections: roles with their per-environment bindings inline, a "test connection"
action on bindings, and the (read-only) test outcomes.

Every write goes through the services: parameters are checked by the kind's schema, credentials
must be secrets of the organization allowed in the environment, a bound role's kind cannot change,
and a locked environment's bindings need manage_environment, all shown as form errors. Binding rows
in environments the staff user may not edit are read-only. Non-superuser staff see only their
organizations' rows."""

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, OuterRef, Subquery

from apps.core.admin import AggregateColumnsMixin, AuditedAdmin, LightModelAdmin, RowServices, ViewOnlyAdminMixin
from apps.core.errors import DomainError
from apps.core.forms import StrictJSONField
from apps.environments.admin_rows import (
    EnvironmentScopedAdminMixin,
    PerEnvironmentInlineForm,
    PerEnvironmentInlineMixin,
    ScopedDefinitionAdmin,
    required_in_field,
)
from apps.pipelines.models import Project
from apps.tenancy.models import Organization

from . import selectors, services
from .models import ConnectionBinding, ConnectionRole, ConnectionTest


def add_binding_error(form, exc: DomainError) -> None:
    """Place a service error on the binding form: `params.<key>` messages go on the params field."""
    placed = False
    for name, messages_ in exc.fields.items():
        target = "params" if name.startswith("params.") else name
        if target in form.fields:
            for message in messages_:
                form.add_error(target, f"{name.removeprefix('params.')}: {message}" if target != name else message)
            placed = True
    if not placed:
        form.add_error(None, exc.message)


# --- bindings inline ------------------------------------------------------------------------------


class BindingInlineForm(PerEnvironmentInlineForm):
    """One binding row; validated by services.validate_binding against the role as edited."""

    params = StrictJSONField(
        initial=dict,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 50}),
        help_text='JSON object, e.g. {"host": "db", "database": "{{ db_schema }}"}. Credentials go in the credential.',
    )

    secret_field = "credential"

    class Meta:
        model = ConnectionBinding
        fields = ["environment", "params", "credential"]

    def validate_row(self, environment, cleaned) -> None:
        services.validate_binding(
            actor=self.admin_request.user,
            role=self.parent,
            environment=environment,
            params=cleaned.get("params"),
            credential=cleaned.get("credential"),
        )

    def place_error(self, exc: DomainError) -> None:
        add_binding_error(self, exc)


class ConnectionBindingInline(PerEnvironmentInlineMixin, admin.StackedInline):
    model = ConnectionBinding
    form = BindingInlineForm
    row_name = "binding"
    row_select_related = ("credential", "role")


# --- roles ----------------------------------------------------------------------------------------


class RoleAdminForm(forms.ModelForm):
    required_in = required_in_field("Environment kinds where a binding must exist before a run or promotion.")

    class Meta:
        model = ConnectionRole
        fields = ["organization", "project", "name", "kind", "description", "required_in"]


@admin.register(ConnectionRole)
class ConnectionRoleAdmin(AggregateColumnsMixin, ScopedDefinitionAdmin):
    form = RoleAdminForm
    may_define = staticmethod(services.may_define)
    definition = RowServices(
        "role", services.connection_role_create, services.connection_role_update, services.connection_role_delete
    )
    rows = RowServices("binding", services.connection_binding_set, delete=services.connection_binding_delete)
    row_fields = ("params", "credential")
    list_display = ["name", "kind", "organization", "project", "required_in", "binding_count"]
    list_filter = ["kind", "organization"]
    list_select_related = ["organization", "project"]
    search_fields = ["name", "description", "organization__slug", "project__slug"]
    inlines = [ConnectionBindingInline]
    aggregate_columns = {"binding_count": ("bindings", Count("bindings"))}

    def get_readonly_fields(self, request, obj=None):
        return ["organization", "project", "name"] if obj is not None else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            kwargs["queryset"] = Organization.objects.restrict(request.user)
        elif db_field.name == "project":
            kwargs["queryset"] = Project.objects.restrict(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def definition_changes(self, current, cleaned_data) -> dict:
        return {
            name: cleaned_data[name]
            for name in services.ROLE_FIELDS
            if name in cleaned_data and cleaned_data[name] != getattr(current, name)
        }

    def _create_kwargs(self, request, cleaned_data) -> dict:
        return {
            "actor": request.user,
            "organization": cleaned_data["organization"],
            "project": cleaned_data.get("project"),
            "name": cleaned_data["name"],
            "kind": cleaned_data["kind"],
            "description": cleaned_data.get("description", ""),
            "required_in": list(cleaned_data.get("required_in") or []),
        }


# --- bindings (list + test action) and test outcomes ------------------------------------------------


@admin.register(ConnectionBinding)
class ConnectionBindingAdmin(ViewOnlyAdminMixin, EnvironmentScopedAdminMixin, AuditedAdmin):
    """Bindings across roles, for finding and testing them; edit them inline under their role."""

    list_display = ["role", "environment", "kind", "credential_reference", "last_test", "updated_at"]
    list_filter = ["environment__organization", "environment__kind", "role__kind"]
    list_select_related = ["role", "environment__organization", "credential"]
    search_fields = ["role__name", "environment__slug"]
    actions = ["test_connection"]
    fields = ["role", "environment", "params", "credential_reference"]
    readonly_fields = fields

    @admin.display(description="kind", ordering="role__kind")
    def kind(self, obj):
        return obj.role.kind

    @admin.display(description="credential")
    def credential_reference(self, obj):
        return obj.credential.display_reference if obj.credential else "—"

    @admin.display(description="last test")
    def last_test(self, obj):
        return f"{obj.last_test_status}: {obj.last_test_message}" if obj.last_test_status else "—"

    def get_queryset(self, request):
        latest = ConnectionTest.objects.filter(binding=OuterRef("pk")).order_by("-created_at")
        return (
            selectors.bindings_for(request.user)
            .select_related("role__organization")
            .annotate(
                last_test_status=Subquery(latest.values("status")[:1]),
                last_test_message=Subquery(latest.values("message")[:1]),
            )
        )

    @admin.action(description="Test connection (queued; see Connection tests for the outcome)")
    def test_connection(self, request, queryset):
        queued = 0
        for binding in queryset.select_related("role", "environment__policy", "credential"):
            if self.run_service(request, services.connection_test_request, actor=request.user, binding=binding):
                queued += 1
        if queued:
            self.message_user(
                request,
                f"Queued {queued} connection test(s); a worker runs them (see Connection tests).",
                level=messages.SUCCESS,
            )


@admin.register(ConnectionTest)
class ConnectionTestAdmin(ViewOnlyAdminMixin, EnvironmentScopedAdminMixin, LightModelAdmin):
    """Outcomes of "test connection" (read-only)."""

    list_display = ["binding", "status", "message", "requested_by", "created_at", "finished_at"]
    list_filter = ["status", "binding__environment__organization", "binding__role__kind"]
    list_select_related = ["binding__role", "binding__environment", "requested_by"]
    search_fields = ["binding__role__name", "binding__environment__slug", "message"]
    fields = ["binding", "status", "message", "requested_by", "created_at", "finished_at"]
    readonly_fields = fields  # type: ignore[assignment]  # all strings; the stubs type `fields` wider

    def get_queryset(self, request):
        return super().get_queryset(request).filter(binding__in=selectors.bindings_for(request.user))

    def environment_of(self, obj):
        return obj.binding.environment
