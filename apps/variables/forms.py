"""Typed values as people type them in forms (the admin's and the screens'): raw text for string
variables, JSON for the other types."""

import json

from django.core.exceptions import ValidationError

from apps.core.errors import field_error
from apps.core.forms import json_from_text

from .models import VariableType

VALUE_HELP = 'String variables: the text as typed. Other types: JSON (42, 1.5, true, [1, 2], {"a": 1}).'


def value_to_text(var_type: str, value) -> str:
    if value is None:
        return ""
    if var_type == VariableType.STRING and isinstance(value, str):
        return value
    return json.dumps(value)


def text_to_value(var_type: str, text, field: str):
    """The typed value entered in the admin: raw text for string variables, JSON otherwise."""
    if text is None or text == "":
        return None
    if var_type == VariableType.STRING:
        return text
    try:
        return json_from_text(text)
    except ValidationError as exc:
        message = f"Enter a JSON value for a {var_type} variable (e.g. 42, 1.5, true): {exc.messages[0]}"
        raise field_error(field, message) from None
