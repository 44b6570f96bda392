"""Query parameters made safe, one parser per type: the filter backend and the hand-parsed parameters
of custom actions (resolve, diff, readiness, preview, as_of...) both read through these, so a value
the database or Python cannot take (an id past the database's integer range, '²', a date-time whose
offset or year is out of range) is a 400 naming the parameter, never a 500."""

import datetime as dt
import re
from decimal import Decimal, InvalidOperation

from django.utils import timezone
from django.utils.dateparse import parse_datetime

from .errors import field_error

DB_INT_MIN = -(2**63)
DB_INT_MAX = 2**63 - 1
# Real UTC offsets run from -12:00 to +14:00; Python accepts up to ±23:59 and PostgreSQL refuses some.
MAX_UTC_OFFSET = dt.timedelta(hours=14)
# No slug, name or search term is longer; every string query parameter publishes this maxLength.
MAX_QUERY_VALUE_LENGTH = 1000

_WHOLE_NUMBER = re.compile(r"-?[0-9]{1,19}")  # ASCII only: int() also reads '٣', str.isdigit() accepts '²'


def parse_whole_number(raw, name: str, *, minimum: int = DB_INT_MIN, maximum: int = DB_INT_MAX) -> int:
    """A whole number in ASCII digits from `minimum` to `maximum` (both within the database's range)."""
    minimum, maximum = max(minimum, DB_INT_MIN), min(maximum, DB_INT_MAX)
    text = str(raw).strip()
    if not _WHOLE_NUMBER.fullmatch(text) or not minimum <= int(text) <= maximum:
        raise field_error(name, f"Give a whole number from {minimum} to {maximum}.")
    return int(text)


def bounds_of(field) -> dict:
    """`minimum`/`maximum` for parse_whole_number from a form or serializer field's min_value/max_value."""
    minimum, maximum = getattr(field, "min_value", None), getattr(field, "max_value", None)
    return {
        "minimum": DB_INT_MIN if minimum is None else minimum,
        "maximum": DB_INT_MAX if maximum is None else maximum,
    }


def parse_id(raw, name: str) -> int:
    """An object id: a whole number from 1 within the database's integer range."""
    return parse_whole_number(raw, name, minimum=1)


def parse_decimal(raw, name: str) -> Decimal:
    """A finite decimal number within the database's integer range (what NumberFilter compares)."""
    try:
        value = Decimal(str(raw).strip())
    except InvalidOperation:
        value = None
    if value is None or not value.is_finite() or abs(value) > DB_INT_MAX or len(value.as_tuple().digits) > 38:
        raise field_error(name, "Give a number.")
    return value


def parse_moment(raw, name: str, *, require_timezone: bool = True) -> dt.datetime:
    """An ISO 8601 date-time, aware, with a real UTC offset (±14:00) and a year from 1 to 9999 in UTC.
    Without `require_timezone`, a naive value is read in the current time zone."""
    message = "Give an ISO 8601 date-time with a time zone, e.g. 2026-11-24T09:00:00Z."
    try:
        moment = parse_datetime(str(raw).strip())
    except ValueError:  # well-formed but impossible, e.g. month 13
        moment = None
    if moment is None:
        raise field_error(name, message)
    if moment.tzinfo is None:
        if require_timezone:
            raise field_error(name, message)
        try:
            moment = timezone.make_aware(moment)
        except (OverflowError, ValueError):
            raise field_error(name, "The date-time is out of range.") from None
    offset = moment.utcoffset()  # aware by now: never None
    if offset is None or abs(offset) > MAX_UTC_OFFSET:
        raise field_error(name, "The UTC offset must be within ±14:00.")
    try:
        moment.astimezone(dt.UTC)
    except (OverflowError, ValueError):
        raise field_error(name, "The date-time is out of range (years 1 to 9999 in UTC).") from None
    return moment


def parse_text(raw, name: str, *, max_length: int = MAX_QUERY_VALUE_LENGTH) -> str:
    """A string parameter of at most `max_length` characters."""
    text = str(raw)
    if len(text) > max_length:
        raise field_error(name, f"Give at most {max_length} characters.")
    return text


def optional(query_params, name: str, parse, **kwargs):
    """`parse(value, name)` of a query parameter, or None when it is absent or empty."""
    raw = query_params.get(name)
    if raw in (None, ""):
        return None
    return parse(raw, name, **kwargs)
