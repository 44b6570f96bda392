"""Logical connection roles and their physical binding per environment."""

from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from simple_history.models import HistoricalRecords

from apps.core.models import json_list, optional_reference, user_reference
from apps.environments.models import Environment, EnvironmentRow
from apps.environments.querysets import EnvScopedQuerySet
from apps.pipelines.models import Project
from apps.secrets.models import secret_reference
from apps.tenancy.models import Organization, OrganizationNamedModel

ROLE_NAME_VALIDATOR = RegexValidator(r"^[a-z][a-z0-9_]{0,63}$", "Use a-z, 0-9 and _, starting with a letter (max 64).")


class ConnectionKind(models.TextChoices):
    POSTGRES = "postgres", "PostgreSQL"
    SQLITE = "sqlite", "SQLite"
    MYSQL = "mysql", "MySQL"
    SNOWFLAKE = "snowflake", "Snowflake"
    S3 = "s3", "S3"
    HTTP = "http", "HTTP"


class ConnectionRole(OrganizationNamedModel):
    """A logical connection ("analytics_warehouse") that graphs refer to by name."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="connection_roles")
    project = optional_reference(Project, on_delete=models.CASCADE, related_name="connection_roles")
    name = models.CharField(max_length=64, validators=[ROLE_NAME_VALIDATOR])
    kind = models.CharField(max_length=20, choices=ConnectionKind.choices)
    description = models.TextField(blank=True, max_length=4000)
    required_in = json_list(help_text="Environment kinds where a binding must exist.")

    history = HistoricalRecords()

    class Meta(OrganizationNamedModel.Meta):
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], condition=Q(project__isnull=True), name="uniq_org_connection_role"
            ),
            models.UniqueConstraint(
                fields=["project", "name"], condition=Q(project__isnull=False), name="uniq_project_connection_role"
            ),
        ]

    def __str__(self):
        return f"{self.name} ({self.kind})"


class ConnectionBinding(EnvironmentRow):
    """Where a role points in one environment: parameters (validated per kind) and a credential."""

    definition_field = "role"
    role = models.ForeignKey(ConnectionRole, on_delete=models.CASCADE, related_name="bindings")
    environment = models.ForeignKey(Environment, on_delete=models.CASCADE, related_name="connection_bindings")
    params = models.JSONField(default=dict, blank=True)
    credential = secret_reference()

    history = HistoricalRecords()

    Meta = EnvironmentRow.meta("role", "uniq_connection_binding")


class ConnectionTestQuerySet(EnvScopedQuerySet):
    environment_path = "binding__environment"


class ConnectionTest(models.Model):
    """The outcome of one "test connection" (kept apart from the binding so tests add no history)."""

    class Status(models.TextChoices):
        QUEUED = "queued"
        OK = "ok"
        FAILED = "failed"

    binding = models.ForeignKey(ConnectionBinding, on_delete=models.CASCADE, related_name="tests")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    message = models.CharField(max_length=500, blank=True)
    requested_by = user_reference(blank=False)
    # Whether the requester, as they authenticated (an API key narrows its owner), could use credentials.
    may_use_credentials = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = ConnectionTestQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"test of {self.binding_id}: {self.status}"
