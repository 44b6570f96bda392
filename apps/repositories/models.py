"""Git repositories as the source of pipeline versions, and the evidence a sync recorded.

Layering: above `secrets` and `pipelines` (credentials are Secret references, versions are
PipelineVersions), below `resolution` and `approvals` (config as code exports repositories; the
approval gates ask this app what the repository says about a version's commit)."""

from django.db import models
from simple_history.models import HistoricalRecords

from apps.core.models import TimeStampedModel, optional_reference
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.secrets.models import secret_reference
from apps.tenancy.querysets import OrgScopedQuerySet


class RepositoryQuerySet(OrgScopedQuerySet):
    organization_path = "pipeline__project__organization"


class Repository(TimeStampedModel):
    """The Git remote a pipeline's versions come from: its definition file at each commit of the
    default branch and at each tag. Credentials are Secret references, never stored here."""

    pipeline = models.OneToOneField(Pipeline, on_delete=models.CASCADE, related_name="repository")
    clone_url = models.CharField(max_length=500, help_text="https://, ssh:// or git@host:path (file:// where allowed).")
    default_branch = models.CharField(max_length=255, default="main")
    definition_path = models.CharField(
        max_length=500, help_text="The pipeline definition inside the repository (.yaml, .yml or .json)."
    )
    credential = secret_reference(help_text="A token (https) or deploy key (ssh).")
    webhook_secret = secret_reference(help_text="Verifies provider webhooks (GitHub's signature key, GitLab's token).")

    objects = RepositoryQuerySet.as_manager()

    history = HistoricalRecords()

    class Meta:
        ordering = ["pipeline__project__name", "pipeline__name"]
        verbose_name_plural = "repositories"

    def __str__(self):
        return f"{self.pipeline} ← {self.clone_url}"

    @property
    def organization_id(self):
        return self.pipeline.project.organization_id


class SyncState(models.TextChoices):
    NEVER = "never", "never synced"
    OK = "ok", "ok"
    FAILED = "failed", "failed"


class RepositorySyncQuerySet(OrgScopedQuerySet):
    organization_path = "repository__pipeline__project__organization"


class RepositorySync(models.Model):
    """The last sync of a repository: operational state, not configuration, so it has no history
    and does not change the repository's ETag. `requested_at` is the outbox of a wanted sync."""

    repository = models.OneToOneField(Repository, on_delete=models.CASCADE, related_name="sync")
    state = models.CharField(max_length=10, choices=SyncState.choices, default=SyncState.NEVER)
    error = models.TextField(blank=True)
    head_commit = models.CharField(max_length=64, blank=True)
    versions_created = models.PositiveIntegerField(default=0)
    requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    objects = RepositorySyncQuerySet.as_manager()

    def __str__(self):
        return f"{self.repository_id}: {self.state}"


class VersionSourceQuerySet(OrgScopedQuerySet):
    organization_path = "version__pipeline__project__organization"


class VersionSource(models.Model):
    """The commit a sync read a version at. Written only by the sync: a version without one was made
    by hand ("not from Git") and never passes a Git gate."""

    version = models.OneToOneField(PipelineVersion, on_delete=models.CASCADE, related_name="git_source")
    repository = optional_reference(Repository, related_name="sources", blank=False)
    commit = models.CharField(max_length=64)
    author_name = models.CharField(max_length=255, blank=True)
    author_email = models.CharField(max_length=255, blank=True)
    committed_at = models.DateTimeField(null=True)
    message = models.CharField(max_length=500, blank=True)
    branch = models.CharField(max_length=255, blank=True)
    tags = models.JSONField(default=list)
    compare_url = models.CharField(max_length=1000, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = VersionSourceQuerySet.as_manager()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["repository", "commit"], name="uniq_version_source_commit")]

    def __str__(self):
        return f"{self.version} @ {self.commit[:10]}"


class WebhookDelivery(models.Model):
    """A provider delivery that was accepted: a second one with the same id is a replay."""

    repository = models.ForeignKey(Repository, on_delete=models.CASCADE, related_name="deliveries")
    provider = models.CharField(max_length=20)
    delivery_id = models.CharField(max_length=200)
    event = models.CharField(max_length=100, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    objects = RepositorySyncQuerySet.as_manager()

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "webhook deliveries"
        constraints = [
            models.UniqueConstraint(fields=["repository", "provider", "delivery_id"], name="uniq_webhook_delivery")
        ]

    def __str__(self):
        return f"{self.provider} {self.delivery_id}"
