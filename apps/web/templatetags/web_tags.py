"""Small display filters for the screens."""

import json

from django import template

register = template.Library()


@register.filter
def show(value) -> str:
    """A configuration or metric value as text: dashes for nothing, JSON for structures."""
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


@register.filter
def signed(value) -> str:
    """A delta with its sign (+3, −2, 0)."""
    if value is None:
        return ""
    if isinstance(value, int | float) and value > 0:
        return f"+{value}"
    return str(value).replace("-", "−")


@register.filter
def is_secret(value) -> bool:
    return isinstance(value, str) and value.startswith("secret://")


@register.filter
def short_hash(value) -> str:
    text = str(value or "")
    return text.removeprefix("sha256:")[:12]


@register.filter
def get_item(mapping, key):
    return mapping.get(key) if isinstance(mapping, dict) else None
