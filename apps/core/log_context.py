"""What every log line says about where it comes from: the request id, the user and organization of
the request, and the run or promotion a worker is busy with. A log filter copies these onto each
record, so the plain and the JSON format (`LOG_FORMAT=json`) carry the same fields."""

import contextlib
import contextvars
import logging

from django.utils.functional import SimpleLazyObject, empty

from .scopes import API_KEY_ATTR

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_request_var: contextvars.ContextVar = contextvars.ContextVar("log_request", default=None)
_fields_var: contextvars.ContextVar[dict] = contextvars.ContextVar("log_fields", default={})  # noqa: B039

FIELDS = ("user", "organization", "run_id", "promotion_id")


@contextlib.contextmanager
def log_context(**fields):
    """Add fields (run_id=..., promotion_id=...) to every record logged inside the block."""
    token = _fields_var.set({**_fields_var.get(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _fields_var.reset(token)


@contextlib.contextmanager
def request_context(request, request_id: str):
    request_token = _request_var.set(request)
    id_token = request_id_var.set(request_id)
    try:
        yield
    finally:
        request_id_var.reset(id_token)
        _request_var.reset(request_token)


def _request_fields(request) -> dict:
    """The user and organization of the request, if authentication has already run: reading them
    must never cause a query (logging happens anywhere, also inside a failing transaction)."""
    if request is None:
        return {}
    user = request.__dict__.get("user")
    if isinstance(user, SimpleLazyObject):
        user = None if user._wrapped is empty else user._wrapped
    fields = {}
    if user is not None and getattr(user, "is_authenticated", False):
        fields["user"] = user.get_username()
    key = user.__dict__.get(API_KEY_ATTR) if user is not None else None
    organization_id = getattr(key, "organization_id", None)
    if organization_id is not None:
        fields["organization"] = organization_id
    return fields


class LogContextFilter(logging.Filter):
    """Puts request_id, user, organization, run_id and promotion_id on every record ('-' if unknown)."""

    def filter(self, record):
        record.request_id = request_id_var.get()
        values = {**_request_fields(_request_var.get()), **_fields_var.get()}
        for name in FIELDS:
            if not hasattr(record, name):
                setattr(record, name, values.get(name, "-"))
        return True
