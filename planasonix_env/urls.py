"""URL wiring: admin, API v1 (with schema and docs), health, and the web screens at the root."""

from csp.decorators import csp_update
from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.core.views import healthz

from .api_router import router

# Swagger UI under the strict CSP: the split view serves its start-up script from this same URL
# (?script) instead of inline, and only this page may load Swagger UI's files from its CDN folder.
_swagger_cdn = f"{settings.SWAGGER_UI_DIST}/"
docs_view = csp_update({"script-src": [_swagger_cdn], "style-src": [_swagger_cdn], "img-src": [_swagger_cdn]})(
    SpectacularSwaggerSplitView.as_view(url_name="api-schema")
)

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", docs_view, name="api-docs"),
    path("api/v1/", include(router.urls)),
    # Session sign-in for everyone (the admin is for staff): the browsable API's login and logout.
    path("api-auth/", include("rest_framework.urls")),
    path("", include("apps.web.urls")),
]

handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
