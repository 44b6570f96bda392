"""The project's admin site: Django's, except that nobody who may not use the admin (anonymous
visitors on the login page included) gets the model admins asked about their permissions, since
those answer through the permission door, which expects a signed-in user."""

from django.contrib import admin
from django.contrib.admin import options as admin_options
from django.contrib.admin.apps import AdminConfig
from django.db import models

from .forms import BoundedModelMultipleChoiceField, StrictJSONField

# Every admin form (model admins, inlines, Django's own auth admins: set here, before the admin
# registers them) edits JSON columns as strict JSON (Django's default accepts NaN and 1e999 and
# recurses without bound: a 500), and many-to-many ids past the database's integer range are form
# errors (SQLite raises OverflowError on them).
admin_options.FORMFIELD_FOR_DBFIELD_DEFAULTS[models.JSONField] = {"form_class": StrictJSONField}
admin_options.FORMFIELD_FOR_DBFIELD_DEFAULTS[models.ManyToManyField] = {"form_class": BoundedModelMultipleChoiceField}

# Callables (user) -> list of sections shown on the admin index. Apps above core register theirs in
# AppConfig.ready() (core knows nothing of runs or promotions).
DASHBOARD_PROVIDERS: list = []


class PlanasonixAdminSite(admin.AdminSite):
    site_header = "Planasonix Environments"
    site_title = "Planasonix Environments"
    index_title = "Administration"

    def index(self, request, extra_context=None):
        sections = []
        if self.has_permission(request):
            for provider in DASHBOARD_PROVIDERS:
                sections.extend(provider(request.user))
        return super().index(request, {**(extra_context or {}), "dashboard": sections})

    def get_app_list(self, request, app_label=None):
        if not self.has_permission(request):
            return []
        return super().get_app_list(request, app_label)


class PlanasonixAdminConfig(AdminConfig):
    default_site = "apps.core.admin_site.PlanasonixAdminSite"
