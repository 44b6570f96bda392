"""Organizations, memberships, service accounts and API keys."""

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from simple_history.models import HistoricalRecords

from apps.core import egress
from apps.core.models import TimeStampedModel, json_list, user_reference
from apps.core.patterns import validate_pattern

from .querysets import ApiKeyQuerySet, OrganizationQuerySet, OrgScopedQuerySet

DEFAULT_ENVIRONMENT_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9 _-]{0,62}$"


def validate_regex(value: str) -> None:
    """The field's validator (migrations name it): RE2 must take the pattern (apps.core.patterns)."""
    validate_pattern(value)


class Edition(models.TextChoices):
    STANDARD = "standard", "Standard (projects only)"
    ENTERPRISE = "enterprise", "Enterprise (environments)"


class Organization(TimeStampedModel):
    """A tenant. Its edition decides whether the environments feature is available."""

    name = models.CharField(max_length=120, unique=True)
    slug = models.SlugField(max_length=60, unique=True)
    edition = models.CharField(max_length=20, choices=Edition.choices, default=Edition.ENTERPRISE)
    max_environments = models.PositiveIntegerField(
        default=5, validators=[MinValueValidator(1), MaxValueValidator(1000)]
    )
    environment_name_pattern = models.CharField(
        max_length=200,
        default=DEFAULT_ENVIRONMENT_NAME_PATTERN,
        validators=[validate_regex],
        help_text="Regular expression every environment name must match in full.",
    )
    # The organization's part of the egress policy (apps/core/egress.py): networks or host names.
    egress_allow = json_list(
        validators=[egress.validate_organization_allow],
        help_text="Networks (CIDR) or host names (*.example.com) this organization's connections, connection "
        "tests and webhooks may reach even where the default policy refuses them (not loopback, link-local or "
        "metadata addresses: only the operator allows those).",
    )
    egress_deny = json_list(
        validators=[egress.validate_organization_deny],
        help_text="Networks (CIDR) or host names (*.example.com) this organization's connections, connection "
        "tests and webhooks may never reach.",
    )

    objects = OrganizationQuerySet.as_manager()
    history = HistoricalRecords()

    class Meta:
        ordering = ["name"]
        permissions = [("operate_platform", "Create organizations and change editions and limits")]

    def __str__(self):
        return self.name

    @property
    def has_environments_feature(self) -> bool:
        return self.edition == Edition.ENTERPRISE


class OrganizationNamedModel(TimeStampedModel):
    """A row an organization owns under a name (a project, a secret, a channel, a connection role, a
    variable, a service account): scoped to the organizations the user may see (`OrgScopedQuerySet`),
    listed by organization then name. A subclass declares its `organization` foreign key, and its
    Meta extends this one (`class Meta(OrganizationNamedModel.Meta)`)."""

    objects = OrgScopedQuerySet.as_manager()

    class Meta:
        abstract = True
        ordering = ["organization__name", "name"]


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


ADMIN_ROLES = (Role.OWNER, Role.ADMIN)


class Membership(TimeStampedModel):
    """A user's role in an organization."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=20, choices=Role.choices, default=Role.MEMBER)

    objects = OrgScopedQuerySet.as_manager()
    history = HistoricalRecords()

    class Meta:
        ordering = ["organization__name", "user__username"]
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="uniq_membership")]

    def __str__(self):
        return f"{self.user} in {self.organization} ({self.role})"


class ServiceAccount(OrganizationNamedModel):
    """A non-human user of an organization (CI systems, external executors); it cannot sign in."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="service_accounts")
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="service_account")
    name = models.CharField(max_length=80)
    description = models.TextField(blank=True, max_length=2000)
    created_by = user_reference()

    history = HistoricalRecords()

    class Meta(OrganizationNamedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_service_account_name")]

    def __str__(self):
        return f"{self.name} (service account, {self.organization})"


def default_scopes():
    return ["read"]


class ApiKey(TimeStampedModel):
    """A bearer credential. Only a hash of the secret is stored; the secret is shown once."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=80)
    prefix = models.CharField(max_length=16, unique=True, editable=False)
    key_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=default_scopes)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = user_reference()

    objects = ApiKeyQuerySet.as_manager()
    # The hash is not a secret value, but history has no use for it; last_used_at changes on use
    # and is written without history (see services.api_key_authenticate).
    history = HistoricalRecords(excluded_fields=["key_hash", "last_used_at"])

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"

    def __str__(self):
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_active(self) -> bool:
        if self.revoked_at is not None:
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class ConfigRevision(models.Model):
    """A counter bumped in the same transaction as every configuration write of an organization.

    Cached resolved configuration is keyed by it, so a write makes every cached answer for the
    organization stale at commit. Not audited: it carries no information of its own."""

    organization = models.OneToOneField(Organization, on_delete=models.CASCADE, related_name="config_revision")
    value = models.PositiveBigIntegerField(default=0)

    objects = OrgScopedQuerySet.as_manager()

    def __str__(self):
        return f"{self.organization_id}@{self.value}"
