"""The project's admin site: Django's, except that nobody who may not use the admin (anonymous
visitors on the login page included) gets the model admins asked about their permissions, since
those answer through the permission door, which expects a signed-in user."""

from django.contrib import admin
from django.contrib.admin.apps import AdminConfig

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
