"""Secret providers: where a secret's value comes from at run time.

A provider is a class with a `name`, `stores_value` (True if the value is kept here, encrypted),
`validate(secret)` and `materialize(secret) -> str`. External stores (Vault, a cloud secret
manager) plug in through the SECRET_PROVIDERS setting: {"vault": "dotted.path.VaultProvider"}."""

import os
import re

from django.conf import settings
from django.utils.module_loading import import_string

from apps.core import crypto
from apps.core.errors import field_error


class SecretUnavailable(Exception):
    """The provider cannot produce the value now (missing variable, undecryptable, store down)."""


class LocalProvider:
    name = "local"
    stores_value = True

    def validate(self, secret) -> None:
        if secret.reference:
            raise field_error("reference", "Local secrets keep their value here; leave the reference empty.")

    def materialize(self, secret) -> str:
        try:
            return crypto.decrypt(secret.ciphertext)
        except crypto.UndecryptableValue as exc:
            raise SecretUnavailable(f"secret '{secret.name}' cannot be decrypted with the configured keys") from exc


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


class EnvProvider:
    """Reads the value from the worker's environment when a run needs it."""

    name = "env"
    stores_value = False

    def validate(self, secret) -> None:
        if not _ENV_NAME.fullmatch(secret.reference or ""):
            raise field_error("reference", "Give the environment variable's name (letters, digits, _).")
        if not secret.reference.startswith(settings.SECRET_ENV_PREFIX):
            # Without the prefix a tenant could name the platform's own variables (DJANGO_SECRET_KEY,
            # FIELD_ENCRYPTION_KEYS, DATABASE_URL) and have them handed to a connection it controls.
            raise field_error("reference", f"Environment secrets must be named {settings.SECRET_ENV_PREFIX}<NAME>.")

    def materialize(self, secret) -> str:
        if not secret.reference.startswith(settings.SECRET_ENV_PREFIX):
            raise SecretUnavailable(f"'{secret.reference}' is not a secret variable ({settings.SECRET_ENV_PREFIX}*)")
        value = os.environ.get(secret.reference)
        if value is None:
            raise SecretUnavailable(f"environment variable '{secret.reference}' is not set on this worker")
        return value


BUILTIN = {"local": LocalProvider, "env": EnvProvider}


def registry() -> dict:
    providers = {name: cls() for name, cls in BUILTIN.items()}
    for name, path in getattr(settings, "SECRET_PROVIDERS", {}).items():
        providers[name] = import_string(path)()
    return providers


def get(name: str):
    providers = registry()
    if name not in providers:
        raise field_error("provider", f"Unknown provider '{name}'; configured: {', '.join(sorted(providers))}.")
    return providers[name]
