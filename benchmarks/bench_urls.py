"""The project's URLs plus two trivial API views for the request-path benchmark: the same view
through the API's authentication, permission and throttling, and with none of them (the floor)."""

from django.urls import path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from planasonix_env.urls import urlpatterns as project_urls


class Ping(APIView):
    """Authenticated (API key or session), scope-checked and throttled like every API view."""

    def get(self, request):
        return Response({"ok": True})


class OpenPing(Ping):
    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []


urlpatterns = [path("bench/ping", Ping.as_view()), path("bench/open-ping", OpenPing.as_view()), *project_urls]
