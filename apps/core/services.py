"""Shared service helpers: saving audited rows with the acting user recorded in history."""

from django.core.exceptions import ValidationError as DjangoValidationError

from apps.core.types import User

from .errors import field_error, from_django_validation_error


def validate(instance, *, exclude=None, validate_unique=True) -> None:
    """full_clean() that raises the domain error instead of Django's."""
    try:
        instance.full_clean(exclude=exclude, validate_unique=validate_unique)
    except DjangoValidationError as exc:
        raise from_django_validation_error(exc) from exc


def refuse_unknown(given, allowed, message: str = "Unknown field.") -> None:
    """A 400 on the first (in sorted order) of the names `given` that `allowed` does not hold."""
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        raise field_error(unknown[0], message)


def first_unlocked(queryset):
    """The first row of `queryset`, locked for the caller's transaction, or None when
    there is none or another worker holds it (SKIP LOCKED): how a worker claims one job row. Only the
    row itself is locked (of=self): on PostgreSQL a plain FOR UPDATE also locks the joined rows, so a
    second worker claiming another row joined to the same one (a delivery of the same channel) would
    skip it as "locked"."""
    return queryset.select_for_update(skip_locked=True, of=("self",)).first()


def audited_save(instance, *, actor: User | None, reason: str | None = None, clean: bool = True) -> None:
    """Validate and save a history-tracked row, recording who did it (and why) in its history.

    Works the same inside requests, tasks and management commands, where no middleware is there
    to tell simple-history who acted."""
    if clean:
        validate(instance)
    if actor is not None and getattr(actor, "is_authenticated", False):
        instance._history_user = actor
    if reason:
        instance._change_reason = reason[:500]
    instance.save()


def audited_update(instance, changes: dict, *, actor: User | None, clean: bool = True) -> None:
    """Set `changes` (field -> value) on a history-tracked row and save it, the history saying which
    fields changed ("changed: a, b")."""
    for name, value in changes.items():
        setattr(instance, name, value)
    audited_save(instance, actor=actor, reason="changed: " + ", ".join(sorted(changes)), clean=clean)


def audited_delete(instance, *, actor: User | None, reason: str | None = None) -> None:
    """Delete a history-tracked row, recording who did it."""
    if actor is not None and getattr(actor, "is_authenticated", False):
        instance._history_user = actor
    if reason:
        instance._change_reason = reason[:500]
    instance.delete()
