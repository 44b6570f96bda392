"""Typed values and the plaintext-credential guard."""

import json
import math
import re
from collections import Counter

from apps.core import patterns
from apps.core.errors import field_error

MAX_STRING = 10_000
MAX_JSON_CHARS = 100_000

SENSITIVE_NAME = re.compile(
    r"(password|passwd|pwd|passphrase|token|api_?key|secret|private_?key|access_?key|credential|bearer)", re.I
)
CREDENTIAL_PATTERNS = [
    (re.compile(r"-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----"), "a PEM block"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key id"),
    (re.compile(r"\bgh[pousr]_[A-Za-z0-9]{30,}\b|\bgithub_pat_[A-Za-z0-9_]{30,}"), "a GitHub token"),
    (re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"), "a Slack token"),
    (re.compile(r"\b(sk|rk)_(live|test)_[A-Za-z0-9]{16,}"), "a Stripe key"),
    (re.compile(r"\bAIza[0-9A-Za-z_\-]{35}\b"), "a Google API key"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}"), "a JSON Web Token"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a URL with a password"),
]
_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9+/=_\-]{32,}$")


def _entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(c / len(text) * math.log2(c / len(text)) for c in counts.values())


def credential_reason(value: str) -> str | None:
    """Why `value` looks like a credential, or None."""
    for pattern, label in CREDENTIAL_PATTERNS:
        if pattern.search(value):
            return label
    token_like = _TOKEN_SHAPE.match(value) and re.search(r"\d", value) and re.search(r"[A-Za-z]", value)
    if token_like and _entropy(value) >= 4.0:
        return "a long high-entropy string"
    return None


def looks_like_credential(name: str, value) -> str | None:
    """A reason if a plaintext (name, value) pair looks like a credential; walks JSON values,
    judging each string by its own key."""
    if isinstance(value, str):
        if not value:
            return None
        if SENSITIVE_NAME.search(name):
            return f"its name '{name}' marks it as sensitive"
        return credential_reason(value)
    if isinstance(value, dict):
        for key, item in value.items():
            reason = looks_like_credential(str(key), item)
            if reason:
                return reason
    if isinstance(value, list):
        for item in value:
            reason = looks_like_credential(name, item)
            if reason:
                return reason
    return None


def _contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_contains_nul(k) or _contains_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_contains_nul(v) for v in value)
    return False


def coerce(var_type: str, value, *, field: str, choices=None, regex: str = "", min_value=None, max_value=None):
    """Check `value` against a variable's type and validation; return it (ints stay ints)."""
    if value is None:
        return None
    if _contains_nul(value):
        raise field_error(field, "NUL characters are not allowed.")
    if var_type == "string":
        if not isinstance(value, str):
            raise field_error(field, f"Expected a string, got {type(value).__name__}.")
        if len(value) > MAX_STRING:
            raise field_error(field, f"At most {MAX_STRING} characters.")
        if regex and not patterns.fullmatch(regex, value):
            raise field_error(field, f"Does not match the pattern {regex}.")
    elif var_type == "integer":
        if isinstance(value, bool) or not isinstance(value, int):
            raise field_error(field, f"Expected an integer, got {type(value).__name__}.")
        if abs(value) > 2**63:
            raise field_error(field, "Out of range.")
    elif var_type == "number":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise field_error(field, f"Expected a number, got {type(value).__name__}.")
    elif var_type == "boolean":
        if not isinstance(value, bool):
            raise field_error(field, f"Expected true or false, got {type(value).__name__}.")
    elif var_type == "json":
        if len(json.dumps(value)) > MAX_JSON_CHARS:
            raise field_error(field, f"At most {MAX_JSON_CHARS} characters of JSON.")
    elif var_type == "secret":
        raise field_error(field, "A secret variable takes a secret reference, not a value.")
    else:
        raise field_error("type", f"Unknown type '{var_type}'.")
    if var_type in ("integer", "number"):
        if min_value is not None and value < min_value:
            raise field_error(field, f"Must be at least {min_value:g}.")
        if max_value is not None and value > max_value:
            raise field_error(field, f"Must be at most {max_value:g}.")
    if choices and value not in choices:
        raise field_error(field, f"Must be one of {', '.join(map(str, choices))}.")
    return value
