"""Admin for organizations, memberships, service accounts and API keys, written through the services.

Every add or change is validated by running the service in a savepoint that is rolled back (so
rule violations become form errors), then saved by running the service for real. Django's model
permissions are not consulted: superusers see everything, other staff see the organizations they
own or administer (the same rule the services apply)."""

from axes import admin as axes_admin
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Count

from apps.core.admin import (
    AggregateColumnsMixin,
    AuditedAdmin,
    IsSetListFilter,
    LightChangelistMixin,
    ReadOnlyAdminMixin,
    ServiceModelAdmin,
    ViewOnlyAdminMixin,
    adopt,
    dry_run,
)
from apps.core.scopes import SCOPES

from . import services
from .models import ApiKey, Membership, Organization, ServiceAccount
from .permissions import (
    ADMIN,
    forget_org_roles,
    is_org_admin,
    is_platform_operator,
    is_superuser,
    sees_all,
    sees_some_organization,
)

User = get_user_model()


def _dry_run(request, func, **kwargs) -> None:
    """core.admin.dry_run, then forget roles the rolled-back call may have cached on the user."""
    try:
        dry_run(func, **kwargs)
    finally:
        forget_org_roles(request.user)


class OrganizationScopedAdmin(AuditedAdmin):
    """Rows, choices and permissions limited to the organizations the staff user administers."""

    def _organization_id(self, obj) -> int:
        return obj.organization_id

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, ADMIN)

    def _may(self, request, obj=None) -> bool:
        if obj is None:
            return sees_some_organization(request.user, ADMIN)
        return is_org_admin(request.user, self._organization_id(obj))

    def has_module_permission(self, request):
        return self._may(request)

    def has_view_permission(self, request, obj=None):
        return self._may(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._may(request, obj)

    def has_add_permission(self, request):
        return self._may(request)

    def has_delete_permission(self, request, obj=None):
        return self._may(request, obj)

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.related_model is Organization:
            kwargs["queryset"] = Organization.objects.restrict(request.user, ADMIN)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class _TenancyServiceAdmin(OrganizationScopedAdmin, ServiceModelAdmin):
    """ServiceModelAdmin for tenancy rows: a rolled-back call may have cached roles on the user."""

    def service_dry_run(self, request, func, **kwargs) -> None:
        _dry_run(request, func, **kwargs)


# --- organizations --------------------------------------------------------------------------


class MembershipInline(ViewOnlyAdminMixin, admin.TabularInline):
    """Read-only list of members; roles change on the membership pages (through the services)."""

    model = Membership
    fields = ["user", "role", "created_at"]
    readonly_fields = fields  # type: ignore[assignment]  # all strings; the stubs type `fields` wider
    extra = 0
    can_delete = False
    show_change_link = True

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "organization")

    def has_view_permission(self, request, obj=None):
        return True  # the organization admin already decided that this organization is visible


ORGANIZATION_FIELDS = services.ORGANIZATION_FIELDS


@admin.register(Organization)
class OrganizationAdmin(AggregateColumnsMixin, _TenancyServiceAdmin):
    list_display = ["name", "slug", "edition", "max_environments", "member_count", "created_at"]
    list_filter = ["edition", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MembershipInline]
    aggregate_columns = {"member_count": ("members", Count("memberships", distinct=True))}

    def _organization_id(self, obj) -> int:
        return obj.pk

    def get_fields(self, request, obj=None):
        return ORGANIZATION_FIELDS + (["created_at"] if obj is not None else [])

    def get_readonly_fields(self, request, obj=None):
        return ["slug", "created_at"] if obj is not None else []

    def get_prepopulated_fields(self, request, obj=None):
        return self.prepopulated_fields if obj is None else {}

    def get_inline_instances(self, request, obj=None):
        return super().get_inline_instances(request, obj) if obj is not None else []

    def has_module_permission(self, request):
        return request.user.is_staff or super().has_module_permission(request)

    def has_add_permission(self, request):
        # Creating organizations is a platform-staff matter (services.organization_create decides).
        return is_platform_operator(request.user)

    def has_delete_permission(self, request, obj=None):
        # There is no service that deletes an organization (and everything in it) safely.
        return False

    def _changes(self, form) -> dict:
        editable = services.ORGANIZATION_ADMIN_FIELDS | services.ORGANIZATION_STAFF_FIELDS
        return {name: form.cleaned_data[name] for name in form.changed_data if name in editable}

    def _create_kwargs(self, request, cleaned_data) -> dict:
        return {
            "actor": request.user,
            "owner": request.user,
            **{name: cleaned_data[name] for name in ORGANIZATION_FIELDS if name in cleaned_data},
        }

    def service_create(self, request, cleaned_data):
        return services.organization_create(**self._create_kwargs(request, cleaned_data))

    def service_update(self, request, obj, form):
        return services.organization_update(actor=request.user, organization=obj, **self._changes(form))


# --- memberships ----------------------------------------------------------------------------


@admin.register(Membership)
class MembershipAdmin(_TenancyServiceAdmin):
    service_decides_cascade = False
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", ("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["user__username", "user__email", "organization__name", "organization__slug"]
    list_select_related = ["user", "organization"]
    actions = ["remove_members"]

    def get_fields(self, request, obj=None):
        return ["organization", "user", "role"] + (["created_at"] if obj is not None else [])

    def get_readonly_fields(self, request, obj=None):
        return ["organization", "user", "created_at"] if obj is not None else []

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "user":
            kwargs["queryset"] = User.objects.filter(is_active=True).order_by("username")
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # bulk deletes would bypass the last-owner rule
        return actions

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        if instance.pk is None:
            _dry_run(
                request,
                services.membership_add,
                actor=request.user,
                organization=cleaned_data["organization"],
                user=cleaned_data["user"],
                role=cleaned_data["role"],
            )
        elif "role" in form.changed_data:
            _dry_run(
                request,
                services.membership_change_role,
                actor=request.user,
                membership=instance,
                role=cleaned_data["role"],
            )

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            saved = services.membership_change_role(actor=request.user, membership=obj, role=data["role"])
        else:
            saved = services.membership_add(
                actor=request.user, organization=data["organization"], user=data["user"], role=data["role"]
            )
        adopt(obj, saved)

    def service_delete(self, request, obj) -> None:
        services.membership_remove(actor=request.user, membership=obj)

    @admin.action(description="Remove selected members (their environment rights and API keys go too)")
    def remove_members(self, request, queryset):
        removed = 0
        for membership in queryset:
            self.run_service(request, services.membership_remove, actor=request.user, membership=membership)
            removed += not Membership.objects.filter(pk=membership.pk).exists()
        if removed:
            self.message_user(request, f"Removed {removed} member(s).", level=messages.SUCCESS)


# --- service accounts -----------------------------------------------------------------------


@admin.register(ServiceAccount)
class ServiceAccountAdmin(_TenancyServiceAdmin):
    list_display = ["name", "organization", "user", "created_by", "created_at"]
    list_filter = [("organization", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["name", "user__username", "organization__name", "organization__slug"]
    list_select_related = ["organization", "user", "created_by"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "name", "description"]
        return ["organization", "name", "description", "user", "created_by", "created_at"]

    def has_change_permission(self, request, obj=None):
        return False  # no service changes a service account; keys are managed on their own page

    def has_delete_permission(self, request, obj=None):
        return False  # removing its membership (Memberships) takes its rights and keys away

    def _create_kwargs(self, request, cleaned_data) -> dict:
        return {
            "actor": request.user,
            "organization": cleaned_data["organization"],
            "name": cleaned_data["name"],
            "description": cleaned_data.get("description", ""),
        }

    def service_create(self, request, cleaned_data):
        return services.service_account_create(**self._create_kwargs(request, cleaned_data))


# --- API keys -------------------------------------------------------------------------------


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=[(scope, scope) for scope in SCOPES],
        widget=forms.CheckboxSelectMultiple,
        help_text="admin includes write, read and run; write includes read; run stands alone.",
    )
    owner = forms.ModelChoiceField(
        queryset=User.objects.none(),
        required=False,
        help_text="Leave empty for yourself; choose a service account's user for a machine key.",
    )

    class Meta:
        model = ApiKey
        fields = ["organization", "name", "owner", "scopes", "expires_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Per request (the admin sets model_admin/admin_request on the form class it builds).
        model_admin = getattr(self, "model_admin", None)
        if model_admin is not None:
            owner = self.fields["owner"]
            assert isinstance(owner, forms.ModelChoiceField)
            owner.queryset = model_admin.owner_choices(getattr(self, "admin_request", None))


API_KEY_VIEW_FIELDS = [
    "organization",
    "name",
    "prefix",
    "owner",
    "scopes",
    "expires_at",
    "last_used_at",
    "revoked_at",
    "created_by",
    "created_at",
]


@admin.register(ApiKey)
class ApiKeyAdmin(OrganizationScopedAdmin):
    """Keys are created here (the token is shown once) and revoked; they are never edited."""

    form = ApiKeyAddForm
    list_display = ["name", "prefix", "organization", "owner", "scopes", "is_active", "expires_at", "last_used_at"]
    list_filter = [
        IsSetListFilter.on("revoked_at", "state", ("revoked", "Revoked"), ("not_revoked", "Not revoked")),
        ("organization", admin.RelatedOnlyFieldListFilter),
    ]
    search_fields = ["name", "prefix", "owner__username", "organization__slug"]
    list_select_related = ["organization", "owner"]
    actions = ["revoke_keys"]

    @admin.display(boolean=True, description="active")
    def is_active(self, obj) -> bool:
        return obj.is_active

    def get_fields(self, request, obj=None):
        return ApiKeyAddForm.Meta.fields if obj is None else API_KEY_VIEW_FIELDS

    def get_readonly_fields(self, request, obj=None):
        return API_KEY_VIEW_FIELDS if obj is not None else []

    def get_form(self, request, obj=None, **kwargs):
        if obj is not None:
            kwargs["form"] = forms.ModelForm  # existing keys are shown read-only
        return super().get_form(request, obj, **kwargs)

    def owner_choices(self, request):
        if sees_all(request.user):
            return User.objects.filter(is_active=True).order_by("username")
        # A key for someone else would let its creator act as them: only service accounts' keys.
        machine_users = ServiceAccount.objects.restrict(request.user, ADMIN).values("user")
        return User.objects.filter(pk__in=machine_users, is_active=True).order_by("username")

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False  # revoked keys stay listed for the audit trail

    def _create_kwargs(self, request, cleaned_data) -> dict:
        return {
            "actor": request.user,
            "organization": cleaned_data["organization"],
            "name": cleaned_data["name"],
            "owner": cleaned_data.get("owner") or request.user,
            "scopes": list(cleaned_data["scopes"]),
            "expires_at": cleaned_data.get("expires_at"),
        }

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        if instance.pk is None:
            _dry_run(request, services.api_key_create, **self._create_kwargs(request, cleaned_data))

    def save_model(self, request, obj, form, change):
        key, token = services.api_key_create(**self._create_kwargs(request, form.cleaned_data))
        adopt(obj, key)
        self.message_user(
            request,
            f"The token of API key '{key.name}' is {token} — copy it now: it is shown only this once.",
            level=messages.WARNING,
        )

    @admin.action(description="Revoke selected keys")
    def revoke_keys(self, request, queryset):
        revoked = 0
        for key in queryset.filter(revoked_at__isnull=True):
            if self.run_service(request, services.api_key_revoke, actor=request.user, key=key) is not None:
                revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", level=messages.SUCCESS)


# --- sign-in audit (django-axes): read-only, for superusers (platform operators) ------------------


class _SignInAuditAdmin(LightChangelistMixin, ReadOnlyAdminMixin):
    """Rows django-axes writes: operators look (superusers only); lockouts are lifted with
    `manage.py axes_reset_username` / `axes_reset_ip`, never by editing the record."""

    def has_module_permission(self, request):
        return is_superuser(request.user)

    def has_view_permission(self, request, obj=None):
        return is_superuser(request.user)


@admin.register(AccessAttempt)
class AccessAttemptAdmin(_SignInAuditAdmin, axes_admin.AccessAttemptAdmin):
    pass


@admin.register(AccessFailureLog)
class AccessFailureLogAdmin(_SignInAuditAdmin, axes_admin.AccessFailureLogAdmin):
    pass


@admin.register(AccessLog)
class AccessLogAdmin(_SignInAuditAdmin, axes_admin.AccessLogAdmin):
    pass
