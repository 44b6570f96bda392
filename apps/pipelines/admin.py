"""Admin for projects, pipelines and their immutable versions, every write through the services.

Each add or change first runs the service in a savepoint that is rolled back, so its refusals show
as form errors; then save_model runs it for real. A version is never edited: its change page is
read-only, and a new version is added from a form that takes the graph as JSON (graph errors name
the node and field). Non-superuser staff see only the organizations they administer."""

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, Max
from django.http import HttpResponseRedirect
from django.urls import reverse
from django.utils.html import format_html

from apps.core.admin import (
    AggregateColumnsMixin,
    LightModelAdmin,
    RowServices,
    ServiceFormMixin,
    ServiceModelAdmin,
    ViewOnlyAdminMixin,
    adopt,
    changed_fields,
    dry_run,
    formsets_saved_by_services,
)
from apps.core.errors import DomainError
from apps.core.forms import StrictJSONField
from apps.environments.models import Environment
from apps.tenancy.admin import OrganizationScopedAdmin
from apps.tenancy.permissions import ADMIN, is_org_admin, sees_some_organization

from . import services
from .models import VERSION_PROVENANCE, Pipeline, PipelineVersion, Project

# --- projects -------------------------------------------------------------------------------


class DerivedSlugForm(forms.ModelForm):
    """A new row's slug may be left empty: the service derives it from the name."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "slug" in self.fields and self.instance.pk is None:
            self.fields["slug"].required = False
            self.fields["slug"].help_text = "Leave empty to derive it from the name."


class _DefinitionAdmin(AggregateColumnsMixin, OrganizationScopedAdmin, ServiceModelAdmin):
    """Projects and pipelines: named and slugged under their `parent` (organization, project), which
    is fixed once created; the change page adds the timestamps; every write goes through the row's
    create/update/delete services, an update with the `editable` fields the form changed."""

    parent = ""
    editable: frozenset[str] = frozenset()
    row: RowServices
    object_history_template = "simple_history/object_history.html"

    def get_fields(self, request, obj=None):
        fields = list(self.form._meta.fields or ())
        return fields if obj is None else [*fields, "created_at", "updated_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else [self.parent, "created_at", "updated_at"]

    def _changes(self, form) -> dict:
        return changed_fields(form, self.editable)

    def _create_kwargs(self, request, data) -> dict:
        return {
            "actor": request.user,
            self.parent: data[self.parent],
            "name": data["name"],
            "slug": data.get("slug") or "",
            "description": data.get("description") or "",
        }

    def service_create(self, request, cleaned_data):
        return self.row.create(**self._create_kwargs(request, cleaned_data))

    def service_update(self, request, obj, form):
        changes = self._changes(form)
        return self.row.update(actor=request.user, **{self.row.name: obj}, **changes) if changes else None

    def service_delete(self, request, obj) -> None:
        self.row.delete(actor=request.user, **{self.row.name: obj})


class ProjectAdminForm(DerivedSlugForm):
    class Meta:
        model = Project
        fields = ["organization", "name", "slug", "description", "default_environment"]


@admin.register(Project)
class ProjectAdmin(_DefinitionAdmin):
    row = RowServices("project", services.project_create, services.project_update, services.project_delete)
    parent, editable = "organization", services.PROJECT_FIELDS
    form = ProjectAdminForm
    list_display = ["name", "slug", "organization", "default_environment", "pipeline_count", "created_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter), "created_at"]
    search_fields = ["name", "slug", "description", "organization__name", "organization__slug"]
    list_select_related = ["organization", "default_environment__organization"]
    create_requires = ("organization",)
    aggregate_columns = {"pipeline_count": ("pipelines", Count("pipelines", distinct=True))}

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        field = form.base_fields.get("default_environment")
        if field is not None:
            environments = Environment.objects.select_related("organization")
            if obj is not None:
                field.queryset = environments.in_organization(obj.organization_id)
            else:
                field.queryset = environments.administered_by(request.user)
        return form

    def _create_kwargs(self, request, data) -> dict:
        return {**super()._create_kwargs(request, data), "default_environment": data.get("default_environment")}


# --- pipelines ------------------------------------------------------------------------------


class VersionInline(ViewOnlyAdminMixin, admin.TabularInline):
    """The pipeline's versions, read-only (a change is a new version, added on the versions page)."""

    model = PipelineVersion
    fields = [
        "number",
        "message",
        "content_hash",
        "author",
        "git_branch",
        "git_commit",
        "git_tag",
        "created_at",
    ]
    readonly_fields = fields  # type: ignore[assignment]  # all strings; the stubs type `fields` wider
    extra = 0
    can_delete = False
    show_change_link = True
    ordering = ["-number"]

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("author", "pipeline__project")

    def has_view_permission(self, request, obj=None):
        return True  # the pipeline admin already decided that this pipeline is visible


class PipelineAdminForm(DerivedSlugForm):
    class Meta:
        model = Pipeline
        fields = ["project", "name", "slug", "description"]


@admin.register(Pipeline)
class PipelineAdmin(_DefinitionAdmin):
    row = RowServices("pipeline", services.pipeline_create, services.pipeline_update, services.pipeline_delete)
    parent, editable = "project", services.PIPELINE_FIELDS
    form = PipelineAdminForm
    list_display = ["name", "slug", "project", "organization", "latest_version", "created_at"]
    list_filter = [
        ("project__organization", admin.RelatedOnlyFieldListFilter),
        ("project", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["name", "slug", "description", "project__name", "project__slug"]
    list_select_related = ["project__organization"]
    inlines = [VersionInline]
    create_requires = ("project",)
    actions = ["run_pipeline"]
    aggregate_columns = {"latest_version": ("latest version", Max("versions__number"))}

    @admin.action(description="Run… (the pipeline page's run dialog)")
    def run_pipeline(self, request, queryset):
        """Runs start in one place, the run dialog, whose refusals the runs service answers: the
        action opens it for the pipeline selected."""
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one pipeline to run.", level=messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("web:pipeline-detail", args=[queryset.get().pk]) + "?run=1")

    def view_on_site(self, obj):
        return reverse("web:pipeline-detail", args=[obj.pk])

    def _organization_id(self, obj) -> int:
        return obj.project.organization_id

    @admin.display(description="organization", ordering="project__organization__name")
    def organization(self, obj):
        return obj.project.organization

    def get_inline_instances(self, request, obj=None):
        return super().get_inline_instances(request, obj) if obj is not None else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "project":
            kwargs["queryset"] = Project.objects.restrict(request.user, ADMIN).select_related("organization")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_related(self, request, form, formsets, change):
        """Versions are read-only here; the services saved the pipeline."""
        formsets_saved_by_services(formsets)


# --- versions -------------------------------------------------------------------------------


class PipelineVersionAddForm(ServiceFormMixin, forms.ModelForm):
    """A new version: the pipeline, its graph as JSON, a message and the Git metadata."""

    graph = StrictJSONField(
        widget=forms.Textarea(attrs={"rows": 24, "cols": 100, "style": "font-family: monospace"}),
        help_text='{"nodes": [{"id": ..., "type": "source" | "destination", ...}], "edges": [["from", "to"]]}',
    )
    compare_url = forms.URLField(max_length=1000, required=False, assume_scheme="https")

    class Meta:
        model = PipelineVersion
        fields = ["pipeline", "graph", "message", *services.GIT_FIELDS]


GRAPH_PRETTY = "graph_pretty"
VERSION_FIELDS = [
    "pipeline",
    "number",
    "message",
    "author",
    "created_at",
    "content_hash",
    GRAPH_PRETTY,
    "provenance",
    *VERSION_PROVENANCE,
]


@admin.register(PipelineVersion)
class PipelineVersionAdmin(LightModelAdmin):
    """Versions are immutable: the change page is read-only; a new version goes through the service."""

    form = PipelineVersionAddForm
    list_display = [
        "__str__",
        "number",
        "pipeline",
        "message",
        "author",
        "provenance",
        "git_branch",
        "git_commit",
        "created_at",
    ]
    list_filter = [
        ("pipeline__project__organization", admin.RelatedOnlyFieldListFilter),
        "from_git",
        "git_merged",
        "created_at",
    ]
    search_fields = ["message", "git_commit", "git_branch", "git_tag", "pipeline__name", "pipeline__slug"]
    list_select_related = ["pipeline__project", "author"]
    date_hierarchy = "created_at"

    # --- who sees what: the organizations the staff user administers ---

    def _may(self, request, obj=None) -> bool:
        if obj is None:
            return sees_some_organization(request.user, ADMIN)
        return is_org_admin(request.user, obj.pipeline.project.organization_id)

    def get_queryset(self, request):
        qs = super().get_queryset(request).select_related("pipeline__project__organization", "author")
        return qs.restrict(request.user, ADMIN)

    def has_module_permission(self, request):
        return self._may(request)

    def has_view_permission(self, request, obj=None):
        return self._may(request, obj)

    def has_add_permission(self, request):
        return self._may(request)

    def has_change_permission(self, request, obj=None):
        return False  # immutable

    def has_delete_permission(self, request, obj=None):
        return False  # immutable; versions go with their pipeline

    # --- pages ---

    def get_fields(self, request, obj=None):
        return PipelineVersionAddForm.Meta.fields if obj is None else VERSION_FIELDS

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else VERSION_FIELDS

    @admin.display(description="graph")
    def graph_pretty(self, obj) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.graph, indent=2, sort_keys=True, ensure_ascii=False))

    def get_form(self, request, obj=None, **kwargs):
        form = super().get_form(request, obj, **kwargs)
        return type(form.__name__, (form,), {"admin_request": request, "model_admin": self})

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "pipeline":
            kwargs["queryset"] = Pipeline.objects.restrict(request.user, ADMIN).select_related("project__organization")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _create_kwargs(self, request, data) -> dict:
        return {
            "actor": request.user,
            "pipeline": data["pipeline"],
            "graph": data["graph"],
            "message": data.get("message") or "",
            **{name: data.get(name) for name in services.GIT_FIELDS if data.get(name) is not None},
        }

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        if cleaned_data.get("pipeline") is None:
            return
        try:
            dry_run(services.pipeline_version_create, **self._create_kwargs(request, cleaned_data))
        except DomainError as exc:
            graph_errors = {name: msgs for name, msgs in exc.fields.items() if name.startswith("graph")}
            if not graph_errors:
                raise
            for name, msgs in graph_errors.items():
                for message in msgs:
                    form.add_error("graph", f"{name}: {message}")
            others = {name: msgs for name, msgs in exc.fields.items() if name not in graph_errors}
            if others:
                raise DomainError(exc.message, fields=others) from exc

    def save_model(self, request, obj, form, change):
        adopt(obj, services.pipeline_version_create(**self._create_kwargs(request, form.cleaned_data)))

    def save_related(self, request, form, formsets, change):
        """No related rows: the service stored the version."""
        formsets_saved_by_services(formsets)
