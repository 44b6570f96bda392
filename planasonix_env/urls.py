"""URL wiring: admin, API v1 (with schema and docs), health, and the web screens at the root."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerSplitView

from apps.core.views import healthz
from apps.insights.metrics import metrics_view

from .api_router import router


class SelfHostedRedocView(SpectacularRedocView):
    """ReDoc from the installed package. Its sidebar's attribution logo is hard-wired to a CDN, so
    the page's policy keeps every request on this server (the logo simply does not show)."""

    POLICY = (
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
        "worker-src 'self' blob:; font-src 'self' data:; object-src 'none'; frame-ancestors 'none'"
    )

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        response["Content-Security-Policy"] = self.POLICY
        return response


urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # Swagger UI and ReDoc from installed packages (drf-spectacular-sidecar); the split view serves
    # Swagger UI's start-up script as a file, so the page needs no inline script.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/redoc/", SelfHostedRedocView.as_view(url_name="api-schema"), name="api-redoc"),
    path("api/v1/", include(router.urls)),
    # Session sign-in for everyone (the admin is for staff): the browsable API's login and logout.
    path("api-auth/", include("rest_framework.urls")),
    path("", include("apps.web.urls")),
]

handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
