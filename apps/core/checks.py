"""System checks for settings that are fine embedded but dangerous in production."""

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import ValidationError

from . import egress


@register(deploy=True)
def production_settings(app_configs, **kwargs):
    problems = []
    if getattr(settings, "FIELD_ENCRYPTION_KEYS_DERIVED", False):
        problems.append(
            Warning(
                "FIELD_ENCRYPTION_KEYS is not set; a key derived from SECRET_KEY encrypts stored secrets.",
                hint="Generate keys with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'` and set FIELD_ENCRYPTION_KEYS.",
                id="planasonix.W001",
            )
        )
    if settings.SECRET_KEY.startswith("insecure-"):
        problems.append(Warning("DJANGO_SECRET_KEY is the embedded default.", id="planasonix.W002"))
    return problems


@register()
def egress_settings(app_configs, **kwargs):
    """EGRESS_ALLOW / EGRESS_DENY must parse: a typo must stop start-up, not every connection later."""
    problems = []
    for name in ("EGRESS_ALLOW", "EGRESS_DENY"):
        try:
            egress.parse_entries(list(getattr(settings, name, []) or []))
        except ValidationError as exc:
            problems.append(Error(f"{name}: {'; '.join(exc.messages)}", id="planasonix.E001"))
    return problems
