"""Admin for environments: history, and every write through the services, so limits, naming,
editions, locks and the permission door hold here as in the API. The guardian object-permission
screens and the grant tables are in `admin_permissions`.

Non-superuser staff see only the environments the door lets them view, change only those they
manage, and reach an environment's object-permission screens only with manage_environment."""

import copy

from django import forms
from django.contrib import admin
from guardian.admin import (
    ReinforcedGuardedModelAdmin,
)

from apps.core.admin import RequestFormInlineMixin, ServiceCheckedForm, ServiceModelAdmin
from apps.core.errors import PermissionDenied
from apps.notifications.models import Channel
from apps.tenancy.models import Organization
from apps.tenancy.permissions import ADMIN, is_org_admin, sees_some_organization

from . import permissions as perms
from . import services
from .admin_permissions import EnvironmentPermissionScreensMixin
from .models import (
    POLICY_SETTINGS,
    Environment,
    FreezeWindow,
    RuntimePolicy,
)

# --- inlines ----------------------------------------------------------------------------------

POLICY_FORM_FIELDS = services.POLICY_FIELDS | {"notification_channels"}


class RuntimePolicyInlineForm(ServiceCheckedForm):
    """Checks a policy change with the services (who may, lock, field rules) before anything saves."""

    class Meta:
        model = RuntimePolicy
        fields = sorted(POLICY_FORM_FIELDS)

    def service_check(self, cleaned) -> None:
        if not self.instance.pk:
            return
        changes = {name: cleaned.get(name) for name in self.changed_data if name in POLICY_FORM_FIELDS}
        if not changes:
            return
        draft = copy.copy(self.instance)
        for name, value in changes.items():
            if name != "notification_channels":
                setattr(draft, name, value)
        services.validate_policy_change(
            actor=self.admin_request.user, environment=self.instance.environment, changes=changes
        )
        services.validate_policy_values(draft)


class RuntimePolicyInline(RequestFormInlineMixin, admin.StackedInline):
    """The one runtime policy of the environment (created with it; changed through the service)."""

    model = RuntimePolicy
    form = RuntimePolicyInlineForm
    fields = [*POLICY_SETTINGS[:4], "notification_channels", *POLICY_SETTINGS[4:]]
    filter_horizontal = ["notification_channels"]
    extra = 0
    max_num = 1
    can_delete = False

    def get_formset(self, request, obj=None, **kwargs):
        formset = super().get_formset(request, obj, **kwargs)
        if obj is not None and "notification_channels" in formset.form.base_fields:
            formset.form.base_fields["notification_channels"].queryset = Channel.objects.filter(
                organization=obj.organization
            )
        return formset

    def has_add_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    # `obj` is the environment; without one (InlineModelAdmin.get_queryset asks that way) the
    # environment admin's own checks already decided who reaches the page.
    def has_change_permission(self, request, obj=None):
        return obj is None or perms.may(request.user, perms.MANAGE, obj)

    def has_view_permission(self, request, obj=None):
        return obj is None or perms.may(request.user, perms.VIEW, obj)


class FreezeWindowInlineForm(ServiceCheckedForm):
    """A freeze window of the environment: adding or deleting one needs manage_environment."""

    class Meta:
        model = FreezeWindow
        fields = ["kind", "starts_at", "ends_at", "cron", "duration_minutes", "timezone", "reason"]

    def service_check(self, cleaned) -> None:
        environment = getattr(self.instance, "environment", None)
        if environment is not None:
            perms.require(self.admin_request.user, perms.MANAGE, environment)


class FreezeWindowInline(RequestFormInlineMixin, admin.TabularInline):
    """Freeze windows: add new ones or delete old ones (there is no service to edit a window)."""

    model = FreezeWindow
    form = FreezeWindowInlineForm
    fields = ["kind", "starts_at", "ends_at", "cron", "duration_minutes", "timezone", "reason"]
    extra = 0

    def _manages(self, request, obj):
        return obj is not None and perms.may(request.user, perms.MANAGE, obj)

    def has_add_permission(self, request, obj=None):
        return self._manages(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._manages(request, obj)

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return obj is None or perms.may(request.user, perms.VIEW, obj)


# --- environment ----------------------------------------------------------------------------------


class EnvironmentAdminForm(forms.ModelForm):
    """Slug and position may be left empty on add: the service derives them."""

    position = forms.IntegerField(required=False, min_value=0, max_value=32767)
    is_protected = forms.TypedChoiceField(
        required=False,
        choices=[("", "By kind (production is protected)"), ("true", "Yes"), ("false", "No")],
        coerce=lambda value: value == "true",
        empty_value=None,
    )

    class Meta:
        model = Environment
        fields = [
            "organization",
            "name",
            "slug",
            "kind",
            "position",
            "promotes_to",
            "is_protected",
            "color",
            "description",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        adding = self.instance.pk is None
        if "slug" in self.fields:
            self.fields["slug"].required = not adding
        if not adding:
            self.fields["position"].required = True
            self.fields["is_protected"] = forms.BooleanField(required=False, label="Is protected")
            self.initial["is_protected"] = self.instance.is_protected


@admin.register(Environment)
class EnvironmentAdmin(EnvironmentPermissionScreensMixin, ReinforcedGuardedModelAdmin, ServiceModelAdmin):
    """Environments, with guardian's object-permission screens and simple-history's history.

    MRO: the guardian admin first (its get_urls adds the permission screens, then defers to
    simple-history's, which adds the history views); ServiceModelAdmin (an AuditedAdmin) wraps the form so that clean()
    asks the services. Both buttons live on guardian's change form, which extends Django's (whose
    object tools link to the history view that simple-history overrides)."""

    form = EnvironmentAdminForm
    change_form_template = "admin/guardian/model/change_form.html"  # type: ignore[misc]  # guardian's stubs: an instance attribute
    object_history_template = "simple_history/object_history.html"
    list_display = ["name", "organization", "kind", "position", "promotes_to", "is_protected", "locked"]
    list_filter = ["organization", "kind", "is_protected", "policy__locked"]
    list_select_related = ["organization", "promotes_to__organization", "policy"]
    search_fields = ["name", "slug", "description", "organization__name", "organization__slug"]
    ordering = ["organization__name", "position", "name"]
    inlines = [RuntimePolicyInline, FreezeWindowInline]
    add_fields = [
        "organization",
        "name",
        "slug",
        "kind",
        "position",
        "promotes_to",
        "is_protected",
        "color",
        "description",
    ]
    change_fields = [
        "organization",
        "name",
        "slug",
        "kind",
        "position",
        "promotes_to",
        "is_protected",
        "color",
        "description",
    ]

    @admin.display(boolean=True, description="locked", ordering="policy__locked")
    def locked(self, obj):
        policy = getattr(obj, "policy", None)
        return bool(policy and policy.locked)

    # --- who sees and changes what (the door, never global model permissions) ---

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, perms.VIEW)

    def has_module_permission(self, request):
        return self.has_view_permission(request) or self.has_add_permission(request)

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            return perms.may(request.user, perms.VIEW, obj)
        return perms.holds_anywhere(request.user, perms.VIEW)

    def has_change_permission(self, request, obj=None):
        if obj is not None:
            return perms.may(request.user, perms.MANAGE, obj)
        return perms.holds_anywhere(request.user, perms.MANAGE)

    def has_add_permission(self, request):
        return sees_some_organization(request.user, ADMIN)

    def has_delete_permission(self, request, obj=None):
        if obj is not None:
            return is_org_admin(request.user, obj.organization)
        return sees_some_organization(request.user, ADMIN)

    # --- forms ---

    def get_fields(self, request, obj=None):
        return self.add_fields if obj is None else self.change_fields

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else ["organization", "kind"]

    def get_inlines(self, request, obj):
        # On add the service creates the policy from the kind's defaults; edit it afterwards.
        return [] if obj is None else self.inlines

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            kwargs["queryset"] = Organization.objects.restrict(request.user, ADMIN)
        elif db_field.name == "promotes_to":
            kwargs["queryset"] = perms.environments_where(
                request.user, perms.VIEW, Environment.objects.select_related("organization")
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _changes(self, form) -> dict:
        return {
            name: form.cleaned_data.get(name)
            for name in form.changed_data
            if name in services.ENVIRONMENT_FIELDS and name in form.cleaned_data
        }

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        """Refuse through the services what save_model would refuse, so it shows as a form error."""
        if instance.pk is None:
            organization = cleaned_data.get("organization")
            if organization is None:
                return
            if not is_org_admin(request.user, organization):
                raise PermissionDenied(f"Only owners and admins of '{organization.slug}' create environments.")
            services.validate_environment_create(
                organization=organization,
                name=cleaned_data.get("name") or "",
                slug=cleaned_data.get("slug") or "",
                promotes_to=cleaned_data.get("promotes_to"),
            )
            return
        perms.require(request.user, perms.MANAGE, instance)
        services.validate_environment_update(environment=instance, changes=self._changes(form))

    def service_update(self, request, obj, form):
        return services.environment_update(actor=request.user, environment=obj, **self._changes(form))

    def service_create(self, request, cleaned_data):
        return services.environment_create(
            actor=request.user,
            organization=cleaned_data["organization"],
            name=cleaned_data["name"],
            kind=cleaned_data["kind"],
            slug=cleaned_data.get("slug") or "",
            position=cleaned_data.get("position"),
            promotes_to=cleaned_data.get("promotes_to"),
            is_protected=cleaned_data.get("is_protected"),
            color=cleaned_data.get("color") or "#6b7280",
            description=cleaned_data.get("description") or "",
        )

    def save_related(self, request, form, formsets, change):
        for formset in formsets:
            self.save_formset(request, form, formset, change)

    def save_formset(self, request, form, formset, change):
        environment = form.instance
        # construct_change_message reads these after saving; the services did the saving.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        if formset.model is RuntimePolicy:
            for inline_form in formset.forms:
                changes = {
                    name: inline_form.cleaned_data.get(name)
                    for name in inline_form.changed_data
                    if name in POLICY_FORM_FIELDS
                }
                if changes and inline_form.instance.pk:
                    policy = services.runtime_policy_update(actor=request.user, environment=environment, **changes)
                    formset.changed_objects.append((policy, sorted(changes)))
        elif formset.model is FreezeWindow:
            for inline_form in formset.deleted_forms:
                if inline_form.instance.pk:
                    services.freeze_window_delete(actor=request.user, window=inline_form.instance)
                    formset.deleted_objects.append(inline_form.instance)
            for inline_form in formset.extra_forms:
                if inline_form in formset.deleted_forms or not inline_form.has_changed():
                    continue
                fields = {name: inline_form.cleaned_data.get(name) for name in FreezeWindowInlineForm.Meta.fields}
                window = services.freeze_window_create(actor=request.user, environment=environment, **fields)
                formset.new_objects.append(window)

    def service_delete(self, request, obj) -> None:
        # Policies, freeze windows and grants go with the environment; environment_delete decides
        # who may delete (org admins), not the admin's per-model delete permissions.
        services.environment_delete(actor=request.user, environment=obj)

    def service_delete_check(self, request, obj) -> None:
        services.validate_environment_delete(environment=obj)

    def delete_refused_response(self, request, obj):
        return self.response_post_save_change(request, obj)
