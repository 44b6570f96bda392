"""User-supplied regular expressions (a variable's validation pattern, an approval rule's ticket pattern,
an organization's environment name pattern), compiled and matched in one place with RE2: linear time in
the input, so a pattern such as (a+)+b cannot pin a worker the way Python's backtracking `re` does.
RE2 refuses what it cannot match in linear time (look-around, back-references); such a pattern, one
longer than MAX_PATTERN_LENGTH, or one whose program is too large is a validation error naming the field."""

import functools

import re2
from django.core.exceptions import ValidationError

from .errors import field_error

MAX_PATTERN_LENGTH = 500
_MAX_PROGRAM_BYTES = 1 << 20  # RE2's memory budget per pattern; bigger programs fail to compile


def _options():
    options = re2.Options()
    options.log_errors = False  # RE2 would print every refused pattern to stderr
    options.max_mem = _MAX_PROGRAM_BYTES
    return options


class PatternError(ValueError):
    """A pattern RE2 cannot take; the message says why."""


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str):
    """The compiled RE2 pattern, or PatternError."""
    if not isinstance(pattern, str):
        raise PatternError("Must be a string.")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"At most {MAX_PATTERN_LENGTH} characters.")
    try:
        return re2.compile(pattern, options=_options())
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(
            f"Not a valid regular expression ({reason}); look-around and back-references are not supported."
        ) from None


def check_pattern(pattern: str, field: str) -> None:
    """Raise the domain's validation error naming `field` when RE2 cannot take `pattern`."""
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        raise field_error(field, str(exc)) from None


def validate_pattern(value: str) -> None:
    """A model/form field validator: Django's ValidationError when RE2 cannot take the pattern."""
    try:
        compile_pattern(value)
    except PatternError as exc:
        raise ValidationError(str(exc)) from None


def fullmatch(pattern: str, value: str) -> bool:
    """Whether `value` matches `pattern` in full, in time linear in len(value)."""
    return compile_pattern(pattern).fullmatch(value) is not None
