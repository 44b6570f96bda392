"""Request plumbing: a request id for logs and error bodies, refusal of NUL bytes in URLs, and the
Content-Security-Policy header."""

import re
import uuid
from urllib.parse import unquote

from csp.constants import UNSAFE_INLINE
from csp.middleware import CSPMiddleware
from django.conf import settings
from django.http import JsonResponse

from .log_context import LogContextFilter, request_context, request_id_var  # noqa: F401  (request_id_var: re-exported)

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestIdMiddleware:
    """Takes X-Request-ID from the caller when it is well-formed, else makes one; echoes it back."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id
        with request_context(request, request_id):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class RequestIdLogFilter(LogContextFilter):
    """The log filter of the LOGGING setting (request id, user, organization, run/promotion ids)."""


class RejectNulBytesMiddleware:
    """NUL bytes in a path or query string are refused with 400 before any view or database sees
    them (PostgreSQL cannot store them and would answer with a 500)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raw_query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or "\x00" in unquote(raw_query):
            field = next(
                (part.split("=", 1)[0] for part in raw_query.split("&") if "\x00" in unquote(part)),
                "path",
            )
            return JsonResponse(
                {
                    "error": {
                        "code": "validation_error",
                        "message": f"{unquote(field) or 'query'}: NUL characters are not allowed.",
                        "fields": {unquote(field).replace("\x00", "") or "query": ["NUL characters are not allowed."]},
                    }
                },
                status=400,
            )
        return self.get_response(request)


class ContentSecurityPolicyMiddleware(CSPMiddleware):
    """django-csp's middleware, strict everywhere (settings.CONTENT_SECURITY_POLICY), except that the
    screens we do not write (the admin, the browsable API, DRF's sign-in) may use inline styles:
    their templates carry style attributes and <style> blocks. Scripts stay 'self' only everywhere."""

    def get_policy_parts(self, request, response, report_only=False):
        parts = super().get_policy_parts(request, response, report_only=report_only)
        if not report_only and request.path_info.startswith(tuple(settings.CSP_INLINE_STYLE_PATH_PREFIXES)):
            update = dict(parts.update or {})
            update["style-src"] = [*update.get("style-src", []), UNSAFE_INLINE]
            parts.update = update
        return parts
