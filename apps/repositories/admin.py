"""Admin for repositories: configuration through the services (a form error for every refusal), a
"sync now" action, the last sync's result, and the read-only webhook deliveries. Non-superuser
staff see only the repositories of organizations they administer; credentials are chosen among
that organization's secrets and never shown as anything but a reference."""

from django.contrib import admin, messages
from django.utils.html import format_html

from apps.core.admin import LightModelAdmin, ReadOnlyAdminMixin, adopt, dry_run
from apps.pipelines.models import Pipeline
from apps.secrets.models import Secret
from apps.tenancy.admin import OrganizationScopedAdmin
from apps.tenancy.permissions import ADMIN

from . import services
from .models import Repository, WebhookDelivery

EDITABLE = ["clone_url", "default_branch", "definition_path", "credential", "webhook_secret"]
SYNC_FIELDS = ["sync_state", "sync_error", "sync_head", "sync_finished_at", "webhook_path"]


@admin.register(Repository)
class RepositoryAdmin(OrganizationScopedAdmin):
    list_display = ["pipeline", "clone_url", "default_branch", "definition_path", "sync_state", "sync_finished_at"]
    list_filter = [("pipeline__project__organization", admin.RelatedOnlyFieldListFilter), "sync__state"]
    search_fields = ["clone_url", "definition_path", "pipeline__name", "pipeline__slug"]
    list_select_related = ["pipeline__project__organization", "sync"]
    actions = ["sync_now"]
    object_history_template = "simple_history/object_history.html"

    def _organization_id(self, obj) -> int:
        return obj.pipeline.project.organization_id

    def get_fields(self, request, obj=None):
        return ["pipeline", *EDITABLE] if obj is None else ["pipeline", *EDITABLE, *SYNC_FIELDS]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["pipeline", *SYNC_FIELDS]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Pipeline:
            kwargs["queryset"] = Pipeline.objects.restrict(request.user, ADMIN).select_related("project")
        elif db_field.related_model is Secret:
            kwargs["queryset"] = Secret.objects.restrict(request.user, ADMIN)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    # --- the last sync ---

    def _sync(self, obj):
        return getattr(obj, "sync", None)

    @admin.display(description="last sync", ordering="sync__state")
    def sync_state(self, obj) -> str:
        sync = self._sync(obj)
        return sync.get_state_display() if sync else "never synced"

    @admin.display(description="sync error")
    def sync_error(self, obj) -> str:
        sync = self._sync(obj)
        return (sync.error if sync else "") or "—"

    @admin.display(description="head commit")
    def sync_head(self, obj) -> str:
        sync = self._sync(obj)
        return (sync.head_commit if sync else "") or "—"

    @admin.display(description="synced at", ordering="sync__finished_at")
    def sync_finished_at(self, obj):
        sync = self._sync(obj)
        return sync.finished_at if sync and sync.finished_at else "—"

    @admin.display(description="webhook URL")
    def webhook_path(self, obj) -> str:
        from django.urls import reverse

        return format_html("<code>{}</code>", reverse("repository-webhook", kwargs={"pk": obj.pk}))

    # --- writes through the services ---

    def _changes(self, form) -> dict:
        return {name: form.cleaned_data.get(name) for name in EDITABLE if name in form.changed_data}

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        if instance.pk is None:
            if cleaned_data.get("pipeline") is not None:
                dry_run(
                    services.repository_create,
                    actor=request.user,
                    **{k: cleaned_data.get(k) for k in ["pipeline", *EDITABLE]},
                )
        else:
            dry_run(services.repository_update, actor=request.user, repository=instance, **self._changes(form))

    def save_model(self, request, obj, form, change):
        if change:
            saved = services.repository_update(actor=request.user, repository=obj, **self._changes(form))
        else:
            fields = {k: form.cleaned_data.get(k) for k in ["pipeline", *EDITABLE]}
            saved = services.repository_create(actor=request.user, **fields)
        adopt(obj, saved)

    def delete_model(self, request, obj):
        services.repository_delete(actor=request.user, repository=obj)

    def delete_queryset(self, request, queryset):
        for repository in queryset:
            self.run_service(request, services.repository_delete, actor=request.user, repository=repository)

    @admin.action(description="Sync now (fetch on the worker)")
    def sync_now(self, request, queryset):
        queued = 0
        for repository in queryset:
            if self.run_service(request, services.repository_sync_now, actor=request.user, repository=repository):
                queued += 1
        if queued:
            self.message_user(
                request, f"Sync queued for {queued} repositor{'y' if queued == 1 else 'ies'}.", messages.SUCCESS
            )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdminMixin, LightModelAdmin):
    """Accepted provider deliveries (read-only): what the replay protection remembers."""

    list_display = ["delivery_id", "provider", "event", "repository", "received_at"]
    list_filter = ["provider", "received_at"]
    list_select_related = ["repository__pipeline__project"]
    readonly_fields = ["repository", "provider", "delivery_id", "event", "received_at"]

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, ADMIN)

    def has_module_permission(self, request):
        from apps.tenancy.permissions import sees_some_organization

        return sees_some_organization(request.user, ADMIN)

    def has_view_permission(self, request, obj=None):
        from apps.tenancy.permissions import is_org_admin, sees_some_organization

        if obj is None:
            return sees_some_organization(request.user, ADMIN)
        return is_org_admin(request.user, obj.repository.pipeline.project.organization_id)
