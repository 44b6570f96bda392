"""Test-only URLconf: the real URLs plus views that fail on purpose (tests/core/test_errors.py)."""

from django.urls import path
from rest_framework.views import APIView

from planasonix_env.urls import urlpatterns as real_urlpatterns

LEAKED_TEXT = "database password is hunter2"  # must never reach a response


class ExplodingApiView(APIView):
    """An API view with an unhandled exception (rendered by the DRF exception handler)."""

    def get(self, request):
        raise RuntimeError(LEAKED_TEXT)


def exploding_plain_view(request):
    """A plain Django view with an unhandled exception (rendered by handler500)."""
    raise RuntimeError(LEAKED_TEXT)


urlpatterns = [
    path("api/v1/test-explode/", ExplodingApiView.as_view()),
    path("api/v1/test-explode-plain/", exploding_plain_view),
    *real_urlpatterns,
]

handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
