"""Stages of the promotion path, their runtime policies, freeze windows and per-stage permissions."""

import zoneinfo
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, ClassVar

from croniter import croniter
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from guardian.managers import GroupObjectPermissionManager, UserObjectPermissionManager
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase
from simple_history.models import HistoricalRecords

from apps.core.models import TimeStampedModel, json_list, optional_reference, user_reference
from apps.tenancy.models import Organization

from .querysets import EnvironmentQuerySet, EnvScopedQuerySet, GrantQuerySet


class Kind(models.TextChoices):
    DEVELOPMENT = "development", "Development"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"
    CUSTOM = "custom", "Custom"


ENVIRONMENT_SETTINGS = (
    "name",
    "slug",
    "kind",
    "position",
    "promotes_to",
    "is_protected",
    "color",
    "description",
)
"""An environment's settings after its organization: what the admin form and the API write."""


class Environment(TimeStampedModel):
    """A stage (development, staging, production or custom) of an organization's promotion path."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="environments")
    name = models.CharField(max_length=63)
    slug = models.SlugField(max_length=63)
    kind = models.CharField(max_length=20, choices=Kind.choices, default=Kind.DEVELOPMENT)
    position = models.PositiveSmallIntegerField(default=0, help_text="Order in the promotion path (low first).")
    promotes_to = optional_reference("self", related_name="promoted_from")
    is_protected = models.BooleanField(default=False, help_text="Protected stages refuse previews and deletion.")
    color = models.CharField(
        max_length=7, default="#6b7280", validators=[RegexValidator(r"^#[0-9a-fA-F]{6}$", "Use #RRGGBB.")]
    )
    description = models.TextField(blank=True, max_length=2000)

    objects = EnvironmentQuerySet.as_manager()

    history = HistoricalRecords()

    class Meta:
        ordering = ["organization__name", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="uniq_environment_slug"),
            models.UniqueConstraint(fields=["organization", "name"], name="uniq_environment_name"),
            models.CheckConstraint(condition=~Q(promotes_to=models.F("id")), name="environment_not_promoting_to_self"),
        ]
        permissions = [
            ("change_environment_config", "Edit overrides, bindings and policy"),
            ("run_in_environment", "Start runs and previews"),
            ("request_promotion", "Request promotion into the environment"),
            ("approve_promotion", "Decide promotion requests targeting the environment"),
            ("use_environment_credentials", "Materialize secrets for runs"),
            ("manage_schedules", "Edit schedules"),
            ("manage_environment", "Everything, including policies and approval rules"),
        ]

    def __str__(self):
        return f"{self.name} ({self.organization.slug})"


class EnvironmentRow(TimeStampedModel):
    """A definition's row in one environment (a connection role's binding, a variable's override):
    environment-scoped, shown as `<definition>@<environment>`. A subclass names its definition's
    foreign key (`definition_field`), declares it and `environment`, and takes the Meta of one row
    per definition and environment from `EnvironmentRow.meta(definition_field, constraint_name)`."""

    definition_field: ClassVar[str]
    environment: "models.ForeignKey[Environment, Environment]"

    objects = EnvScopedQuerySet.as_manager()

    class Meta:
        abstract = True

    @staticmethod
    def meta(definition_field: str, constraint_name: str) -> Any:
        """Listed by the definition's name, then stage; one row per definition and environment."""
        return type(
            "Meta",
            (),
            {
                "ordering": [f"{definition_field}__name", "environment__position"],
                "constraints": [
                    models.UniqueConstraint(fields=[definition_field, "environment"], name=constraint_name)
                ],
            },
        )

    def __str__(self):
        return f"{getattr(self, self.definition_field).name}@{self.environment.slug}"


class _EnvironmentGrant(models.Model):
    """A guardian grant on one environment through a direct foreign key (not generic)."""

    content_object = models.ForeignKey(Environment, on_delete=models.CASCADE)

    class Meta:
        abstract = True


class EnvironmentUserObjectPermission(UserObjectPermissionBase, _EnvironmentGrant):  # noqa: DJ008  # guardian's __str__
    """A permission on one environment granted to a user."""

    objects = UserObjectPermissionManager.from_queryset(GrantQuerySet)()  # type: ignore[misc]  # guardian's stubs: a ClassVar
    history = HistoricalRecords()

    class Meta(UserObjectPermissionBase.Meta):
        verbose_name = "environment user permission"


class EnvironmentGroupObjectPermission(GroupObjectPermissionBase, _EnvironmentGrant):  # noqa: DJ008  # guardian's __str__
    """A permission on one environment granted to a group."""

    objects = GroupObjectPermissionManager.from_queryset(GrantQuerySet)()  # type: ignore[misc]  # guardian's stubs: a ClassVar
    history = HistoricalRecords()

    class Meta(GroupObjectPermissionBase.Meta):
        verbose_name = "environment group permission"


class LogLevel(models.TextChoices):
    DEBUG = "DEBUG", "Debug"
    INFO = "INFO", "Info"
    WARNING = "WARNING", "Warning"
    ERROR = "ERROR", "Error"


def validate_destinations(value) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValidationError("Give a list of connection role names and/or connection kinds.")
    if len(value) > 200:
        raise ValidationError("At most 200 entries.")
    too_long = [v for v in value if len(v) > 100]
    if too_long:
        raise ValidationError(f"Entries are at most 100 characters: {too_long[0][:20]}…")


# The settings of a runtime policy, in display order (everything else reads this list).
POLICY_SETTINGS = (
    "max_rows",
    "sample_rows",
    "sample_percent",
    "allowed_destinations",
    "log_level",
    "allow_runtime_overrides",
    "forbid_plaintext_secrets",
    "locked",
    "watch_first_runs",
    "auto_rollback_on_failure",
    "expectations",
)


class RuntimePolicy(TimeStampedModel):
    """How runs behave in one environment: limits, sampling, destinations, locks, watching."""

    environment = models.OneToOneField(Environment, on_delete=models.CASCADE, related_name="policy")
    max_rows = models.PositiveBigIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Cap on rows read per source; empty = none."
    )
    sample_rows = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1)], help_text="Read at most this many rows per source."
    )
    sample_percent = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        validators=[MinValueValidator(Decimal("0.01")), MaxValueValidator(Decimal("100"))],
        help_text="Keep this share of source rows.",
    )
    allowed_destinations = json_list(
        validators=[validate_destinations],
        help_text="Connection role names and/or kinds runs may write to; empty = any.",
    )
    notification_channels = models.ManyToManyField(
        "notifications.Channel", blank=True, related_name="environment_policies"
    )
    log_level = models.CharField(max_length=10, choices=LogLevel.choices, default=LogLevel.INFO)
    allow_runtime_overrides = models.BooleanField(default=True)
    forbid_plaintext_secrets = models.BooleanField(default=False)
    locked = models.BooleanField(default=False, help_text="Edits need the manage_environment permission.")
    watch_first_runs = models.PositiveSmallIntegerField(default=0, validators=[MaxValueValidator(100)])
    auto_rollback_on_failure = models.BooleanField(default=False)
    expectations = models.JSONField(
        default=dict,
        blank=True,
        help_text='Column expectations for every destination run here, e.g. {"email": {"not_null": true}} '
        "(apps.pipelines.expectations).",
    )

    objects = EnvScopedQuerySet.as_manager()

    history = HistoricalRecords(m2m_fields=[notification_channels])

    class Meta:
        verbose_name_plural = "runtime policies"

    def __str__(self):
        return f"policy of {self.environment}"


class FreezeKind(models.TextChoices):
    ONE_OFF = "one_off", "One-off"
    RECURRING = "recurring", "Recurring"


def validate_timezone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"Unknown time zone '{value}'.") from exc


def validate_cron(value: str) -> None:
    if not croniter.is_valid(value) or len(value.split()) != 5:
        raise ValidationError(f"'{value}' is not a five-field cron expression.")
    try:  # syntactically valid but never due (e.g. 30 February) would break schedulers later
        now = datetime.now(tz=zoneinfo.ZoneInfo("UTC"))
        croniter(value, now).get_next(datetime)
        croniter(value, now).get_prev(datetime)
    except Exception as exc:  # croniter raises several error types for impossible dates
        raise ValidationError(f"'{value}' never fires.") from exc


class FreezeWindow(TimeStampedModel):
    """A period in which deployments into the environment are blocked."""

    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="freeze_windows")
    kind = models.CharField(max_length=20, choices=FreezeKind.choices, default=FreezeKind.ONE_OFF)
    starts_at = models.DateTimeField(null=True, blank=True)
    ends_at = models.DateTimeField(null=True, blank=True)
    cron = models.CharField(max_length=100, blank=True, validators=[validate_cron], help_text="Start of each window.")
    duration_minutes = models.PositiveIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(60 * 24 * 31)]
    )
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    reason = models.CharField(max_length=500)
    created_by = user_reference()

    objects = EnvScopedQuerySet.as_manager()

    history = HistoricalRecords()

    class Meta:
        ordering = ["environment", "starts_at", "id"]

    def __str__(self):
        if self.kind == FreezeKind.RECURRING:
            return f"{self.environment.name}: every '{self.cron}' for {self.duration_minutes} min ({self.timezone})"
        return f"{self.environment.name}: {self.starts_at:%Y-%m-%d %H:%M} → {self.ends_at:%Y-%m-%d %H:%M}"

    def clean(self):
        errors = {}
        if self.kind == FreezeKind.ONE_OFF:
            if not self.starts_at:
                errors["starts_at"] = "A one-off window needs a start."
            if not self.ends_at:
                errors["ends_at"] = "A one-off window needs an end."
            if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
                errors["ends_at"] = "The end must be after the start."
            if self.cron:
                errors["cron"] = "Only recurring windows have a cron expression."
        else:
            if not self.cron:
                errors["cron"] = "A recurring window needs a cron expression."
            if not self.duration_minutes:
                errors["duration_minutes"] = "A recurring window needs a duration."
            if self.starts_at or self.ends_at:
                errors["starts_at"] = "Recurring windows have no fixed start or end."
        if errors:
            raise ValidationError(errors)

    def active_at(self, moment: datetime) -> bool:
        """True if `moment` (aware) falls inside this window."""
        if self.kind == FreezeKind.ONE_OFF:
            return bool(self.starts_at and self.ends_at and self.starts_at <= moment < self.ends_at)
        tz = zoneinfo.ZoneInfo(self.timezone)
        local = moment.astimezone(tz)
        # The latest start at or before `moment`; croniter's get_prev is exclusive, so step 1 s on
        # from the whole second (from `local` itself, a moment just under a second before a start
        # would find that start, ahead of it, and miss the earlier window still running).
        last_start = croniter(self.cron, local.replace(microsecond=0) + timedelta(seconds=1)).get_prev(datetime)
        # clean() refuses a recurring window without a duration; a row without one is never active.
        return last_start <= local < last_start + timedelta(minutes=self.duration_minutes or 0)
