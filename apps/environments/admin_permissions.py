"""The environment's guardian object-permission screens: per-user and per-group permission forms
limited to the environment codenames and saved through the services, the screens' manage_environment
guard (mixed into the environment admin), and the read-mostly grant tables."""

from typing import TYPE_CHECKING

from django.contrib import admin
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import transaction
from django.shortcuts import get_object_or_404
from guardian.admin import AdminGroupObjectPermissionsForm, AdminUserObjectPermissionsForm, GuardedModelAdminMixin

from apps.core.admin import ServiceModelAdmin
from apps.core.errors import DomainError
from apps.tenancy.permissions import is_org_admin

from . import permissions as perms
from . import services
from .models import Environment, EnvironmentGroupObjectPermission, EnvironmentUserObjectPermission

# --- object-permission screens ------------------------------------------------------------------


class _ServicePermissionsFormMixin:
    """Guardian's per-user/per-group permission form, limited to the environment codenames and
    saved through permission_grant/permission_revoke (membership, group and manage rules; history
    with the acting user)."""

    actor = None
    holder_kwarg = "user"

    def _holder(self):
        return getattr(self, self.holder_kwarg)

    def get_obj_perms_field_choices(self):
        labels = dict(super().get_obj_perms_field_choices())
        return [(codename, labels.get(codename, codename)) for codename in perms.CODENAMES]

    def get_obj_perms_field_initial(self):
        return [codename for codename in super().get_obj_perms_field_initial() if codename in perms.CODENAMES]

    def _diff(self):
        wanted = set(self.cleaned_data[self.get_obj_perms_field_name()])
        held = set(self.get_obj_perms_field_initial())
        return sorted(wanted - held), sorted(held - wanted)

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        to_grant, to_revoke = self._diff()
        try:
            for codename in to_grant + to_revoke:
                services.validate_permission_change(
                    actor=self.actor, environment=self.obj, codename=codename, **{self.holder_kwarg: self._holder()}
                )
        except DomainError as exc:
            self.add_error(None, exc.message)
        return cleaned

    @transaction.atomic
    def save_obj_perms(self):
        to_grant, to_revoke = self._diff()
        holder = {self.holder_kwarg: self._holder()}
        for codename in to_revoke:
            services.permission_revoke(actor=self.actor, environment=self.obj, codename=codename, **holder)
        for codename in to_grant:
            services.permission_grant(actor=self.actor, environment=self.obj, codename=codename, **holder)


class EnvironmentUserPermissionsForm(_ServicePermissionsFormMixin, AdminUserObjectPermissionsForm):
    holder_kwarg = "user"


class EnvironmentGroupPermissionsForm(_ServicePermissionsFormMixin, AdminGroupObjectPermissionsForm):
    holder_kwarg = "group"


if TYPE_CHECKING:
    _ModelAdminBase = admin.ModelAdmin
else:
    _ModelAdminBase = object


class EnvironmentPermissionScreensMixin(_ModelAdminBase):
    """Guardian's object-permission screens of EnvironmentAdmin, behind manage_environment on that
    environment (and organization admin for group grants), with the service-backed forms."""

    # --- object-permission screens: manage_environment on that environment ---
    # ReinforcedGuardedModelAdmin guards these screens with *global* permissions on guardian's
    # generic tables; this project never consults global permissions (ENGINEERING trap 1) and
    # keeps grants in direct-FK tables, so the per-object manage_environment check replaces it.

    def _managed_or_deny(self, request, object_pk) -> Environment:
        environment = get_object_or_404(self.get_queryset(request), pk=object_pk)
        if not perms.may(request.user, perms.MANAGE, environment):
            raise DjangoPermissionDenied
        return environment

    def obj_perms_manage_view(self, request, object_pk):
        self._managed_or_deny(request, object_pk)
        return GuardedModelAdminMixin.obj_perms_manage_view(self, request, object_pk)

    def obj_perms_manage_user_view(self, request, object_pk, user_id):
        self._managed_or_deny(request, object_pk)
        return GuardedModelAdminMixin.obj_perms_manage_user_view(self, request, object_pk, user_id)

    def obj_perms_manage_group_view(self, request, object_pk, group_id):
        environment = self._managed_or_deny(request, object_pk)
        if not is_org_admin(request.user, environment.organization):
            raise DjangoPermissionDenied
        return GuardedModelAdminMixin.obj_perms_manage_group_view(self, request, object_pk, group_id)

    def get_obj_perms_manage_user_form(self, request):
        return type("EnvironmentUserPermissionsForm", (EnvironmentUserPermissionsForm,), {"actor": request.user})

    def get_obj_perms_manage_group_form(self, request):
        return type("EnvironmentGroupPermissionsForm", (EnvironmentGroupPermissionsForm,), {"actor": request.user})


# --- the grant tables (read-mostly: grant on the environment's permission screen) --------------


class _GrantAdmin(ServiceModelAdmin):
    """A grant table of one holder kind (`holder`: "user" or "group"), shown and searched by the
    holder's `holder_name_field`."""

    holder = "user"
    holder_name_field = "username"
    service_decides_cascade = False
    list_display = ["content_object", "holder_name", "permission_codename"]
    list_select_related = ["content_object__organization", "permission"]
    list_filter = ["permission__codename", "content_object__organization"]

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        name_path = f"{cls.holder}__{cls.holder_name_field}"
        cls.search_fields = [name_path, "content_object__name", "content_object__slug"]

        @admin.display(description=cls.holder, ordering=name_path)
        def holder_name(self, obj):
            return getattr(getattr(obj, self.holder), self.holder_name_field)

        cls.holder_name = holder_name

    @admin.display(description="permission", ordering="permission__codename")
    def permission_codename(self, obj):
        return obj.permission.codename

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, perms.MANAGE).select_related(self.holder)

    def has_module_permission(self, request):
        return self.has_view_permission(request)

    def has_view_permission(self, request, obj=None):
        if obj is not None:
            return perms.may(request.user, perms.MANAGE, obj.content_object)
        return perms.holds_anywhere(request.user, perms.MANAGE)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return self.has_view_permission(request, obj)

    def service_delete(self, request, obj) -> None:
        services.permission_revoke(
            actor=request.user,
            environment=obj.content_object,
            codename=obj.permission.codename,
            **{self.holder: getattr(obj, self.holder)},
        )


@admin.register(EnvironmentUserObjectPermission)
class EnvironmentUserObjectPermissionAdmin(_GrantAdmin):
    holder, holder_name_field = "user", "username"


@admin.register(EnvironmentGroupObjectPermission)
class EnvironmentGroupObjectPermissionAdmin(_GrantAdmin):
    holder, holder_name_field = "group", "name"
