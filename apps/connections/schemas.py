"""Per-kind parameter schemas for connection bindings. Credentials never go in params."""

import re
from urllib.parse import parse_qsl, urlsplit

from apps.core.errors import ValidationFailed

TEMPLATE = re.compile(r"\{\{\s*[a-z][a-z0-9_]*\s*\}\}")
CREDENTIAL_KEYS = re.compile(r"(password|passwd|pwd|secret|token|api_?key|private_?key|access_?key|credential)", re.I)

# name -> (type, required)
SCHEMAS: dict[str, dict[str, tuple[type | tuple, bool]]] = {
    "postgres": {
        "host": (str, True),
        "port": (int, False),
        "database": (str, True),
        "user": (str, False),
        "sslmode": (str, False),
        "schema": (str, False),
        "connect_timeout": (int, False),
    },
    "sqlite": {"path": (str, True)},
    "mysql": {"host": (str, True), "port": (int, False), "database": (str, True), "user": (str, False)},
    "snowflake": {
        "account": (str, True),
        "warehouse": (str, True),
        "database": (str, True),
        "schema": (str, False),
        "role": (str, False),
        "user": (str, False),
    },
    "s3": {"bucket": (str, True), "prefix": (str, False), "region": (str, False), "endpoint_url": (str, False)},
    "http": {"base_url": (str, True), "timeout_seconds": ((int, float), False), "verify_tls": (bool, False)},
}
CHOICES = {("postgres", "sslmode"): ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")}


def _url_carries_credential(value: str) -> bool:
    """A URL with a password in its authority or a credential-named query parameter (params are
    kept in history and shown to viewers: a token there would be a plaintext secret)."""
    if "://" not in value:
        return False
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return False
    return bool(password) or any(CREDENTIAL_KEYS.search(name) for name, _ in parse_qsl(parts.query))


def validate_params(kind: str, params, *, resolved: bool = False) -> dict:
    """Check params against the kind's schema. Before resolution a string with {{ variable }} may
    stand in for any type; after resolution (`resolved=True`) every value must have its type."""
    schema = SCHEMAS.get(kind)
    if schema is None:
        raise ValidationFailed(f"kind: unknown connection kind '{kind}'.", fields={"kind": ["Unknown kind."]})
    if not isinstance(params, dict):
        raise ValidationFailed("params: must be an object.", fields={"params": ["Must be an object."]})
    errors: dict[str, list[str]] = {}
    for key in params:
        if CREDENTIAL_KEYS.search(str(key)):
            errors[f"params.{key}"] = ["Credentials do not go in params; reference a Secret as the credential."]
        elif key not in schema:
            errors[f"params.{key}"] = [f"Unknown parameter for {kind}; allowed: {', '.join(schema)}."]
    for key, (expected, required) in schema.items():
        value = params.get(key)
        if value is None:
            if required:
                errors[f"params.{key}"] = ["Required."]
            continue
        if isinstance(value, str) and "\x00" in value:
            errors[f"params.{key}"] = ["NUL characters are not allowed."]
            continue
        if not resolved and isinstance(value, str) and TEMPLATE.search(value):
            continue
        if isinstance(value, bool) and expected is not bool:
            ok = False
        else:
            ok = isinstance(value, expected)
        if not ok:
            names = expected.__name__ if isinstance(expected, type) else " or ".join(t.__name__ for t in expected)
            errors[f"params.{key}"] = [f"Expected {names}, got {type(value).__name__}."]
        elif isinstance(value, str) and (not value.strip() or len(value) > 2000):
            errors[f"params.{key}"] = ["Give a non-empty value of at most 2000 characters."]
        elif isinstance(value, str) and _url_carries_credential(value):
            errors[f"params.{key}"] = ["Credentials do not go in URLs; reference a Secret as the credential."]
        elif (kind, key) in CHOICES and value not in CHOICES[(kind, key)]:
            errors[f"params.{key}"] = [f"One of: {', '.join(CHOICES[(kind, key)])}."]
        elif key == "port" and not (0 < value < 65536):
            errors[f"params.{key}"] = ["A TCP port (1-65535)."]
    if errors:
        first, messages = next(iter(errors.items()))
        raise ValidationFailed(f"{first}: {messages[0]}", fields=errors)
    return params
