"""The API's JSON parser: strict JSON only. Duplicate keys (which value wins is up to the parser, so two
readers of one body could disagree), NaN and Infinity (not JSON; PostgreSQL's jsonb refuses them) and
nesting past MAX_JSON_DEPTH (Python's decoder recurses, and a 10,000-deep body exhausts the stack) are
refused with a 400 in the one error shape."""

import json
import math

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 64


class StrictJSONError(ValueError):
    """A document that is valid for Python's json module but not strict JSON."""


def _refuse_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise StrictJSONError(f"Duplicate key {key!r}.")
        seen[key] = value
    return seen


def _refuse_constant(name):
    raise StrictJSONError(f"{name} is not a JSON number.")


def _finite_float(text):
    value = float(text)
    if not math.isfinite(value):
        raise StrictJSONError(f"{text[:40]} is out of range for a JSON number.")
    return value


def json_depth(value) -> int:
    """How deeply containers nest in a decoded JSON value (a scalar is 0), without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        stack.extend((child, depth + 1) for child in children)
    return deepest


def loads_strict(text: str | bytes, *, max_depth: int = MAX_JSON_DEPTH):
    """Decode strict JSON (see the module docstring); raises StrictJSONError (a ValueError) naming the problem."""
    try:
        value = json.loads(
            text, object_pairs_hook=_refuse_duplicates, parse_constant=_refuse_constant, parse_float=_finite_float
        )
    except RecursionError:
        raise StrictJSONError(f"Nested deeper than {max_depth} levels.") from None
    except StrictJSONError:
        raise
    except (ValueError, TypeError) as error:
        raise StrictJSONError(f"Not valid JSON: {error}") from None
    if json_depth(value) > max_depth:
        raise StrictJSONError(f"Nested deeper than {max_depth} levels.")
    return value


class StrictJSONParser(JSONParser):
    """JSONParser through `loads_strict`."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        try:
            text = stream.read().decode(encoding)
        except UnicodeDecodeError:
            raise ParseError(f"JSON parse error - the body is not {encoding}.") from None
        try:
            return loads_strict(text)
        except StrictJSONError as error:
            raise ParseError(f"JSON parse error - {error}") from None
