"""Credential references. A Secret is what configuration points at; its value is write-only."""

from django.core.validators import RegexValidator
from django.db import models
from simple_history.models import HistoricalRecords

from apps.core.models import optional_reference, user_reference
from apps.environments.models import Environment
from apps.tenancy.models import Organization, OrganizationNamedModel

SECRET_NAME_VALIDATOR = RegexValidator(r"^[a-z][a-z0-9_]{0,63}\Z", "Use lower-case letters, digits and _ (max 64).")


class Secret(OrganizationNamedModel):
    """A named credential. `local` values are encrypted at rest (MultiFernet); `env` values are read
    from the worker's environment at run time; other providers resolve `reference` externally."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="secrets")
    name = models.CharField(max_length=64, validators=[SECRET_NAME_VALIDATOR])
    description = models.TextField(blank=True, max_length=2000)
    provider = models.CharField(max_length=32, default="local")
    ciphertext = models.TextField(blank=True, editable=False)
    reference = models.CharField(
        max_length=500, blank=True, help_text="env: the variable name; external providers: their path or id."
    )
    fingerprint = models.CharField(max_length=32, blank=True, editable=False)
    rotated_at = models.DateTimeField(null=True, blank=True, editable=False)
    allowed_environments = models.ManyToManyField(Environment, related_name="allowed_secrets", blank=True)
    created_by = user_reference()

    history = HistoricalRecords(excluded_fields=["ciphertext"], m2m_fields=[allowed_environments])

    class Meta(OrganizationNamedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_secret_name")]

    def __str__(self):
        return f"secret:{self.name}"

    @property
    def display_reference(self) -> str:
        """How a secret shows up wherever configuration is displayed: a reference, never a value."""
        return f"secret://{self.name}"


def secret_reference(**options) -> models.ForeignKey:
    """Configuration's pointer to a secret (a credential, a signing key): optional, and the secret
    cannot be deleted while something points at it."""
    return optional_reference(Secret, on_delete=models.PROTECT, **options)
