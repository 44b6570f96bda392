"""The API's one error shape: {"error": {"code", "message", "fields"?}} for every failure."""

import logging

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .errors import DomainError, from_django_validation_error
from .middleware import request_id_var

logger = logging.getLogger("planasonix.api")

_ON_ERROR_ATTR = "_planasonix_on_api_error"


def on_api_error(request, callback) -> None:
    """Have `callback()` run if this request ends in an error response (exception_handler below):
    the API key's throttle takes back a request it counted before a check refused it."""
    request.__dict__.setdefault(_ON_ERROR_ATTR, []).append(callback)


def error_body(code: str, message: str, fields: dict | None = None) -> dict:
    body: dict[str, object] = {"code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


def _flatten(detail, prefix=""):
    """DRF error detail (nested dicts/lists) -> {"field.sub": [messages]}."""
    out: dict[str, list[str]] = {}
    if isinstance(detail, dict):
        for key, value in detail.items():
            if key == "non_field_errors":  # about the object at this level: the parent field, or the whole input
                name = prefix.rstrip(".") or "__all__"
            else:
                name = f"{prefix}{key}"
            for sub_key, messages in _flatten(value, f"{name}.").items():
                out.setdefault(sub_key.rstrip("."), []).extend(messages)
    elif isinstance(detail, list):
        if all(not isinstance(item, dict | list) for item in detail):
            out[prefix or "__all__"] = [str(item) for item in detail]
        else:
            for index, item in enumerate(detail):
                for sub_key, messages in _flatten(item, f"{prefix}{index}.").items():
                    out.setdefault(sub_key.rstrip("."), []).extend(messages)
    else:
        out[prefix or "__all__"] = [str(detail)]
    return out


def _fields_message(fields: dict[str, list[str]]) -> str:
    name, messages = next(iter(fields.items()))
    return messages[0] if name == "__all__" else f"{name}: {messages[0]}"


def exception_handler(exc, context):
    """Render every error as {"error": {"code", "message", "fields"?}}; never echo internals."""
    request = context.get("request")
    for callback in request.__dict__.pop(_ON_ERROR_ATTR, ()) if request is not None else ():
        callback()
    if isinstance(exc, DomainError):
        return Response(error_body(exc.code, exc.message, exc.fields), status=exc.status)
    if isinstance(exc, DjangoValidationError):
        converted = from_django_validation_error(exc)
        return Response(error_body(converted.code, converted.message, converted.fields), status=400)
    if isinstance(exc, IntegrityError):
        return Response(
            error_body("conflict", "The change conflicts with existing data (a unique value is already taken)."),
            status=409,
        )
    if isinstance(exc, SuspiciousOperation):
        return Response(error_body("bad_request", "The request was refused: " + _suspicious_reason(exc)), status=400)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()

    response = drf_exception_handler(exc, context)
    if response is None:
        request_id = request_id_var.get()
        logger.exception("unhandled error in API view (request %s)", request_id)
        return Response(
            error_body("server_error", f"Internal error. Quote request id {request_id} when reporting it."),
            status=500,
        )
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        response.data = error_body("validation_error", _fields_message(fields), fields)
    else:
        detail = exc.detail if isinstance(exc, exceptions.APIException) else str(exc)
        code = getattr(exc, "default_code", "error")
        if isinstance(detail, dict | list):
            fields = _flatten(detail)
            response.data = error_body(code, _fields_message(fields), fields)
        else:
            response.data = error_body(getattr(detail, "code", None) or code, str(detail))
    return response


def _suspicious_reason(exc) -> str:
    name = type(exc).__name__
    if name == "RequestDataTooBig":
        return "the request body is too large."
    if name == "TooManyFieldsSent":
        return "too many fields."
    return "malformed request."


# --- OpenAPI --------------------------------------------------------------------------------

ERROR_SCHEMA = {
    "type": "object",
    "description": "The one error shape of the API.",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code, e.g. validation_error."},
                "message": {"type": "string", "description": "Human-readable summary (the first problem)."},
                "fields": {
                    "type": "object",
                    "description": "Per-field messages; `__all__` for errors about the whole input.",
                    "additionalProperties": {"type": "array", "items": {"type": "string"}},
                },
            },
            "required": ["code", "message"],
        }
    },
    "required": ["error"],
}
