"""API plumbing shared by every app: pagination, scope checks, strict input (errors: api_errors)."""

from rest_framework import exceptions, pagination, permissions, serializers

from .scopes import SCOPES, scopes_grant  # noqa: F401  (re-exported for API modules)


class Pagination(pagination.PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


class IsAuthenticatedWithScope(permissions.BasePermission):
    """Requires an authenticated user; for API-key requests, the key's scopes must include the
    scope the view asks for (`required_scopes` by action, else read for safe methods and write
    for the rest)."""

    message = "Authentication credentials were not provided or are not valid."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        key = request.auth
        if key is None or not hasattr(key, "scopes"):
            return True
        required = required_scope(request, view)
        if not scopes_grant(key.scopes, required):
            raise exceptions.PermissionDenied(f"This API key lacks the '{required}' scope.")
        return True


def required_scope(request, view) -> str:
    per_action = getattr(view, "required_scopes", {}) or {}
    action = getattr(view, "action", None)
    if action in per_action:
        return per_action[action]
    return "read" if request.method in permissions.SAFE_METHODS else "write"


def contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


class StrictSerializer(serializers.Serializer):
    """Refuses fields the serializer does not know (a typo must not be silently ignored) and NUL
    characters anywhere in JSON values."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(str(k) for k in data if k not in writable)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            bad = sorted(k for k, v in data.items() if contains_nul(v))
            if bad:
                raise serializers.ValidationError({name: ["NUL characters are not allowed."] for name in bad})
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    """ModelSerializer with StrictSerializer's checks."""
