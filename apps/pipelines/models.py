"""Projects, pipelines and their immutable versions."""

from django.core.exceptions import ValidationError
from django.db import models
from simple_history.models import HistoricalRecords

from apps.core.models import TimeStampedModel, optional_reference, user_reference
from apps.environments.models import Environment
from apps.tenancy.models import Organization, OrganizationNamedModel
from apps.tenancy.querysets import OrgScopedQuerySet


class Project(OrganizationNamedModel):
    """A group of pipelines; its default environment is used when a run names none."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=63)
    description = models.TextField(blank=True, max_length=4000)
    default_environment = optional_reference(Environment, related_name="default_for_projects")

    history = HistoricalRecords()

    class Meta(OrganizationNamedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "slug"], name="uniq_project_slug")]

    def __str__(self):
        return self.name


class PipelineQuerySet(OrgScopedQuerySet):
    organization_path = "project__organization"


class Pipeline(TimeStampedModel):
    """One pipeline definition, run in every stage without forking."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="pipelines")
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=63)
    description = models.TextField(blank=True, max_length=4000)

    objects = PipelineQuerySet.as_manager()

    history = HistoricalRecords()

    class Meta:
        ordering = ["project__name", "name"]
        constraints = [models.UniqueConstraint(fields=["project", "slug"], name="uniq_pipeline_slug")]

    def __str__(self):
        return f"{self.project.slug}/{self.slug}"

    @property
    def organization_id(self):
        return self.project.organization_id


class PipelineVersionQuerySet(OrgScopedQuerySet):
    organization_path = "pipeline__project__organization"


VERSION_PROVENANCE = (
    "git_repository",
    "git_commit",
    "git_branch",
    "git_tag",
    "git_merged",
    "compare_url",
)
"""Where a version came from in Git: what the admin and the API show of it."""


class PipelineVersion(models.Model):
    """An immutable snapshot of a pipeline's graph. A change is a new version."""

    pipeline = models.ForeignKey(Pipeline, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    graph = models.JSONField()
    content_hash = models.CharField(max_length=71, editable=False)
    author = user_reference(blank=False)
    message = models.CharField(max_length=500, blank=True)
    git_repository = models.CharField(max_length=500, blank=True)
    git_commit = models.CharField(max_length=64, blank=True)
    git_branch = models.CharField(max_length=255, blank=True)
    git_tag = models.CharField(max_length=255, blank=True)
    git_merged = models.BooleanField(default=False)
    compare_url = models.URLField(max_length=1000, blank=True)
    # Set only by a Git sync (apps.repositories): the git_* fields above are then the repository's
    # word, recorded when the commit was read; otherwise they are whatever the author typed.
    from_git = models.BooleanField(default=False, editable=False)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    objects = PipelineVersionQuerySet.as_manager()
    # Never loaded by a list, changelist or list page (apps.core.models.without_blobs).
    HEAVY_FIELDS = ("graph",)

    class Meta:
        ordering = ["pipeline", "-number"]
        constraints = [models.UniqueConstraint(fields=["pipeline", "number"], name="uniq_pipeline_version_number")]

    def __str__(self):
        return f"{self.pipeline} v{self.number}"

    def save(self, *args, **kwargs):
        if self.pk is not None:
            raise ValidationError("Pipeline versions are immutable; create a new version instead.")
        super().save(*args, **kwargs)

    @property
    def provenance(self) -> str:
        return "from Git" if self.from_git else "not from Git"
