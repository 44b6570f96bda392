"""The API's OpenAPI generator: every operation documents each error status it can really answer
with, in the one error shape (`apps.core.api_errors`), so the published schema and the code agree.

One place decides, from the view itself, what an operation can fail with: 400 for every operation
(its body, its query parameters, or a malformed request: NUL bytes, bad JSON, oversize), 401/403
when it needs credentials, 404 when it names an object (a path parameter) or reads a list (a page
past the last, an id filter), 409/415 for writes, 412 for writes on resources with ETags (If-Match),
429 when a throttle applies, 500, and the web server's 414 for a request line past its limit (HTML,
from gunicorn before the application sees the request). tests/core/test_openapi_errors.py holds
every operation of the schema to this, so a new endpoint cannot publish less."""

from django.core.exceptions import FieldDoesNotExist
from django.db import models
from drf_spectacular import openapi
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework.permissions import AllowAny

from .api import ETagMixin
from .api_errors import ERROR_SCHEMA

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}
RETRY_AFTER = {"description": "Seconds to wait before retrying.", "required": True, "schema": {"type": "integer"}}
URI_TOO_LONG = {
    "description": "The request line (path and query string) is longer than the web server accepts "
    "(gunicorn's limit_request_line); answered by the server, as HTML.",
    "content": {"text/html": {"schema": {"type": "string"}}},
}


def requires_credentials(view) -> bool:
    return not all(isinstance(permission, AllowAny) for permission in view.get_permissions())


def signed(func):
    """Mark a public action that authenticates the request by a signature or token instead of a
    user (provider and trigger webhooks): its schema documents the 401 it answers a bad one with."""
    func.checks_signature = True
    return func


def checks_signature(view) -> bool:
    return getattr(getattr(view, getattr(view, "action", None) or "", None), "checks_signature", False)


def _model_field(field):
    """The model column a declared serializer field reads, or None."""
    model = getattr(getattr(getattr(field, "parent", None), "Meta", None), "model", None)
    source = getattr(field, "source", "") or ""
    if model is None or not source or source == "*" or "." in source:
        return None
    try:
        column = model._meta.get_field(source)
    except FieldDoesNotExist:
        return None
    return column if hasattr(column, "blank") else None  # a reverse relation is no column


def _allow_blank_and_null(field, schema: dict) -> None:
    # Read-only fields lose allow_blank/allow_null in DRF (drf-spectacular handles writable ones):
    # the column they read says whether they answer '' or null.
    column = _model_field(field) if getattr(field, "read_only", False) else None
    if column is None:
        return
    if "format" in schema and isinstance(column, models.CharField) and column.blank:  # URLField, EmailField
        schema["anyOf"] = [{"format": schema.pop("format")}, {"maxLength": 0}]
    if column.null and not getattr(field, "allow_null", False):
        schema["nullable"] = True


class AutoSchema(openapi.AutoSchema):
    """drf-spectacular's generator plus the API's error statuses and two field rules that make
    responses match the schema: a read-only formatted string (URL, e-mail) over a blank-allowed
    column publishes that '' is a value, and one over a nullable column that it can be null."""

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if isinstance(schema, dict):
            _allow_blank_and_null(field, schema)
        return schema

    def _insert_field_validators(self, field, schema):  # validators add formats (URLValidator: uri)
        super()._insert_field_validators(field, schema)
        _allow_blank_and_null(field, schema)

    def get_operation(self, path, path_regex, path_prefix, method, registry):
        operation = super().get_operation(path, path_regex, path_prefix, method, registry)
        if operation is None:
            return None
        error = ResolvedComponent(name="Error", type=ResolvedComponent.SCHEMA, schema=ERROR_SCHEMA, object="Error")
        registry.register_on_missing(error)
        content = {"application/json": {"schema": error.ref}}
        responses = operation.setdefault("responses", {})
        for code, description in self.error_statuses(operation).items():
            responses.setdefault(code, {"description": description, "content": content})
        if "429" in responses:
            responses["429"].setdefault("headers", {"Retry-After": RETRY_AFTER})
        responses.setdefault("414", URI_TOO_LONG)
        return operation

    def error_statuses(self, operation) -> dict[str, str]:
        """{status: description} of the errors this operation can answer with."""
        method, view = self.method, self.view
        has_path_parameters = any(p.get("in") == "path" for p in operation.get("parameters", []))
        has_query_parameters = any(p.get("in") == "query" for p in operation.get("parameters", []))
        invalid = ["a malformed request (NUL bytes, oversize)"]
        if "requestBody" in operation:
            invalid.insert(0, "an invalid body (`fields` names each field)")
        if has_query_parameters:
            invalid.insert(0, "an invalid query parameter (`fields` names it)")
        statuses = {"400": "Invalid input: " + ", ".join(invalid) + "."}
        if requires_credentials(view):
            statuses["401"] = "Missing, invalid, expired or revoked credentials."
            statuses["403"] = "Authenticated, but not allowed (role, environment permission or API-key scope)."
        elif checks_signature(view):
            statuses["401"] = "A bad, missing, stale or replayed signature or token; nothing was written."
        if has_path_parameters or method == "GET":
            statuses["404"] = "No such object, or not visible to you (or a page past the last)."
        if method in WRITE_METHODS:
            statuses["409"] = "The change conflicts with existing data or with the object's state."
            if isinstance(view, ETagMixin) and method != "POST":
                statuses["412"] = "If-Match does not match the resource's current ETag; read it again."
            statuses["415"] = "The request body is not JSON."
        if view.get_throttles():
            statuses["429"] = "Too many requests; retry after the number of seconds in Retry-After."
        statuses["500"] = "Unexpected error; the message quotes the request id."
        return statuses
