"""`Authorization: Bearer <api key>` authentication for the API."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .permissions import attach_api_key
from .services import api_key_authenticate, api_key_prefix
from .throttling import ApiKeyFailureThrottle


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """Authenticates as the key's owner; `request.auth` is the ApiKey (its scopes narrow access)."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if not parts or parts[0].lower() != self.keyword.lower():
            return None
        if len(parts) != 2:
            ApiKeyFailureThrottle().record_failure(request)
            raise exceptions.AuthenticationFailed("Malformed Authorization header; use 'Bearer <api key>'.")
        failures = ApiKeyFailureThrottle()
        failures.refuse_if_over(request, api_key_prefix=api_key_prefix(parts[1]), token=parts[1])
        key = api_key_authenticate(parts[1])
        if key is None:
            failures.record_failure(request)
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked API key.")
        attach_api_key(key.owner, key)
        return key.owner, key

    def authenticate_header(self, request):
        return self.keyword


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "apps.tenancy.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {"type": "http", "scheme": "bearer", "bearerFormat": "pnx_<prefix>_<secret>"}
