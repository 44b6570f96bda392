"""URL wiring: admin, API v1 (with schema and docs), health, and the web screens at the root."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from apps.core.views import healthz
from apps.insights.metrics import metrics_view

from .api_router import router

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI and ReDoc from installed packages (drf-spectacular-sidecar); the split view serves
    # Swagger UI's start-up script as a file, so the page needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/v1/", include(router.urls)),
    # Session sign-in for everyone (the admin is for staff): the browsable API's login and logout.
    path("api-auth/", include("rest_framework.urls")),
    path("", include("apps.web.urls")),
]

handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
