"""Variable definitions at organization, project or pipeline scope, and per-environment overrides."""

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from apps.core.models import json_list, optional_reference
from apps.environments.models import Environment, EnvironmentRow, Kind
from apps.environments.querysets import EnvScopedQuerySet
from apps.pipelines.models import Pipeline, Project
from apps.secrets.models import secret_reference
from apps.tenancy.models import Organization, OrganizationNamedModel

VARIABLE_NAME_VALIDATOR = RegexValidator(
    r"^[a-z][a-z0-9_]{0,63}$", "Use a-z, 0-9 and _, starting with a letter (max 64)."
)


class VariableType(models.TextChoices):
    STRING = "string"
    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    JSON = "json"
    SECRET = "secret"


class Scope(models.TextChoices):
    ORGANIZATION = "organization"
    PROJECT = "project"
    PIPELINE = "pipeline"


VARIABLE_CHECKS = ("required_in", "choices", "regex", "min_value", "max_value", "allow_runtime_override")
"""What a variable's values must satisfy, in the order every list of a definition shows them."""

VARIABLE_SETTINGS = ("type", "default_value", "default_secret", "description", *VARIABLE_CHECKS)
"""A definition's settings after its scope and name: what the admin form, the API and the services edit."""


class Variable(OrganizationNamedModel):
    """A named, typed value with a default; scope is the most specific of organization/project/pipeline."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="variables")
    project = optional_reference(Project, on_delete=models.CASCADE, related_name="variables")
    pipeline = optional_reference(Pipeline, on_delete=models.CASCADE, related_name="variables")
    name = models.CharField(max_length=64, validators=[VARIABLE_NAME_VALIDATOR])
    type = models.CharField(max_length=16, choices=VariableType.choices, default=VariableType.STRING)
    default_value = models.JSONField(null=True, blank=True)
    default_secret = secret_reference()
    description = models.TextField(blank=True, max_length=4000)
    required_in = json_list(help_text="Environment kinds where a value must exist.")
    choices = models.JSONField(null=True, blank=True)
    regex = models.CharField(max_length=500, blank=True)
    min_value = models.FloatField(null=True, blank=True)
    max_value = models.FloatField(null=True, blank=True)
    allow_runtime_override = models.BooleanField(default=False)

    history = HistoricalRecords()

    class Meta(OrganizationNamedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"],
                condition=Q(project__isnull=True, pipeline__isnull=True),
                name="uniq_org_variable",
            ),
            models.UniqueConstraint(
                fields=["project", "name"],
                condition=Q(project__isnull=False, pipeline__isnull=True),
                name="uniq_project_variable",
            ),
            models.UniqueConstraint(
                fields=["pipeline", "name"], condition=Q(pipeline__isnull=False), name="uniq_pipeline_variable"
            ),
            models.CheckConstraint(
                condition=Q(pipeline__isnull=True) | Q(project__isnull=False), name="variable_pipeline_has_project"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.scope})"

    @property
    def scope(self) -> str:
        if self.pipeline_id:
            return Scope.PIPELINE
        if self.project_id:
            return Scope.PROJECT
        return Scope.ORGANIZATION


def override_value() -> tuple[models.JSONField, models.ForeignKey]:
    """An override's value columns: a typed value (`value`), or for a secret variable a reference to
    a secret (`secret`), never a plain value."""
    return models.JSONField(null=True, blank=True), secret_reference()


class VariableOverride(EnvironmentRow):
    """The value a variable takes in one environment (a typed value or a secret reference)."""

    definition_field = "variable"
    variable = models.ForeignKey(Variable, on_delete=models.CASCADE, related_name="overrides")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="variable_overrides")
    value, secret = override_value()

    history = HistoricalRecords()

    Meta = EnvironmentRow.meta("variable", "uniq_variable_override")


# The environment kinds where members may keep personal overrides (every check and form reads this).
PERSONAL_KINDS = (Kind.DEVELOPMENT,)


class PersonalOverrideQuerySet(EnvScopedQuerySet):
    """Personal overrides: `restrict` as for every environment-scoped row (administrators' listing);
    `owned_by` is what a member ever reaches of them (their own rows, in environments they see)."""

    def owned_by(self, user):
        return self.restrict(user).filter(user_id=user.pk)


class PersonalOverride(EnvironmentRow):
    """One member's own value for a variable in one development environment: it applies only to the
    runs, previews and resolves that member starts (provenance `personal`), never to anyone else's."""

    definition_field = "variable"
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="personal_overrides")
    variable = models.ForeignKey(Variable, on_delete=models.CASCADE, related_name="personal_overrides")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="personal_overrides")
    value, secret = override_value()  # a secret variable's personal value too is a reference

    objects = PersonalOverrideQuerySet.as_manager()  # type: ignore[misc]  # the stubs take the inherited manager for a ClassVar

    history = HistoricalRecords()

    class Meta:
        ordering = ["variable__name", "environment__position", "id"]
        constraints = [
            models.UniqueConstraint(fields=["user", "variable", "environment"], name="uniq_personal_override")
        ]

    def __str__(self):
        return f"{super().__str__()} for {self.user}"
