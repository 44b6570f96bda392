"""The base of every management command: bad input is one line naming the problem and a non-zero exit.

Domain errors (refused rules, permissions, validation) and Django validation errors become
CommandError with their message and per-field details; what Python raises on input of the wrong
shape (TypeError, ValueError, OverflowError, AttributeError, LookupError, RecursionError) becomes
CommandError too, so no traceback reaches the operator (`--traceback` still shows one). The argument
types below bound numbers at parse time."""

import argparse
import math

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.management.base import BaseCommand, CommandError

from .errors import DomainError, from_django_validation_error
from .params import DB_INT_MAX


def domain_message(exc: DomainError) -> str:
    """The error's message, plus its per-field messages when they say more."""
    details = "; ".join(f"{name}: {', '.join(messages)}" for name, messages in exc.fields.items())
    return exc.message + (f" ({details})" if details and details not in exc.message else "")


class DomainCommand(BaseCommand):
    """BaseCommand whose `handle` answers bad input with CommandError (one line, exit status 1)."""

    def execute(self, *args, **options):
        try:
            return super().execute(*args, **options)
        except CommandError:
            raise
        except DomainError as exc:
            raise CommandError(domain_message(exc)) from exc
        except DjangoValidationError as exc:
            raise CommandError(domain_message(from_django_validation_error(exc))) from exc
        except RecursionError as exc:
            raise CommandError("The input is nested too deeply.") from exc
        except (TypeError, ValueError, OverflowError, AttributeError, LookupError) as exc:
            raise CommandError(f"The input has a value of the wrong type or out of range: {exc}") from exc


def whole_number(text: str) -> int:
    """argparse type: a whole number from 1 within the database's integer range."""
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= DB_INT_MAX:
        raise argparse.ArgumentTypeError(f"give a whole number from 1 to {DB_INT_MAX}, not {text!r}")
    return int(value)


def seconds(text: str, *, maximum: float = 7 * 24 * 3600) -> float:
    """argparse type: a finite, positive number of seconds (at most a week)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or not 0 < value <= maximum:
        raise argparse.ArgumentTypeError(f"give a number of seconds above 0 and at most {maximum:g}, not {text!r}")
    return value
