"""The project's domain errors. Services raise these; the API maps them to HTTP statuses and
the admin and screens show their message."""

from django.core.exceptions import ValidationError as DjangoValidationError


class DomainError(Exception):
    """Base of every business-rule error. `fields` maps field names to messages."""

    code = "domain_error"
    status = 400

    def __init__(self, message: str, *, fields: dict[str, list[str]] | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}
        if code:
            self.code = code

    def __str__(self):
        return self.message


class ValidationFailed(DomainError):
    code = "validation_error"
    status = 400


class PermissionDenied(DomainError):
    code = "permission_denied"
    status = 403


class NotFound(DomainError):
    code = "not_found"
    status = 404


class Conflict(DomainError):
    code = "conflict"
    status = 409


class PreconditionFailed(DomainError):
    code = "precondition_failed"
    status = 412


def field_error(field: str, message: str) -> ValidationFailed:
    """A validation error about one field."""
    return ValidationFailed(f"{field}: {message}", fields={field: [message]})


def from_django_validation_error(exc: DjangoValidationError) -> ValidationFailed:
    """Convert Django's ValidationError (from full_clean) into the domain error."""
    if hasattr(exc, "error_dict"):
        fields = {name: [str(m) for e in errors for m in e.messages] for name, errors in exc.error_dict.items()}
        first_field, first_messages = next(iter(fields.items()))
        label = "" if first_field == "__all__" else f"{first_field}: "
        return ValidationFailed(f"{label}{first_messages[0]}", fields=fields)
    return ValidationFailed("; ".join(exc.messages), fields={"__all__": list(exc.messages)})
