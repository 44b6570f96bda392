"""Projects, pipelines and versions. Org admins shape projects; members author pipelines and versions."""

import re

from django.db import transaction
from django.db.models import Max, ProtectedError
from django.utils.text import slugify

from apps.core.errors import Conflict, PermissionDenied, field_error
from apps.core.services import audited_delete, audited_save, audited_update, refuse_unknown, validate
from apps.core.types import User
from apps.environments.models import Environment
from apps.tenancy.permissions import is_org_admin, is_org_member, require_org_admin

from . import graph as graphs
from .models import Pipeline, PipelineVersion, Project

GIT_FIELDS = ("git_repository", "git_commit", "git_branch", "git_tag", "git_merged", "compare_url")
PROJECT_FIELDS = frozenset({"name", "slug", "description", "default_environment"})
PIPELINE_FIELDS = frozenset({"name", "slug", "description"})
GIT_COMMIT = re.compile(r"[0-9a-f]{7,64}")

# Hooks for apps above this one (variables): callables (pipeline, graph) raising ValidationFailed,
# e.g. for graph text that interpolates a secret variable.
version_checks: list = []


def _refuse_unknown(changes: dict, allowed: frozenset) -> None:
    """Updates change only the editable fields (never the organization, project or timestamps)."""
    refuse_unknown(changes, allowed, "Unknown field or not editable.")


def _delete_or_conflict(instance, *, actor: User, reason: str) -> None:
    """Delete; rows that still point at it (PROTECT) make it a 409 naming them, not a 500."""
    try:
        with transaction.atomic():
            audited_delete(instance, actor=actor, reason=reason)
    except ProtectedError as exc:
        users = sorted({str(o) for o in exc.protected_objects})[:5]
        raise Conflict(f"'{instance}' is still referenced by: {', '.join(users)}.") from exc


def _check_default_environment(organization, environment) -> None:
    if environment is not None and environment.organization_id != organization.pk:
        raise field_error("default_environment", "Must be an environment of the same organization.")


def _default_environment_for(organization):
    """Standard-edition organizations have one environment: every project uses it."""
    if organization.has_environments_feature:
        return None
    return Environment.objects.filter(organization=organization).order_by("position").first()


@transaction.atomic
def project_create(
    *, actor: User, organization, name: str, slug: str = "", description: str = "", default_environment=None
) -> Project:
    require_org_admin(actor, organization, "create projects")
    slug = slug or slugify(name)[:63]
    if Project.objects.filter(organization=organization, slug=slug).exists():
        raise Conflict(f"A project with slug '{slug}' exists.", fields={"slug": ["Already taken."]})
    default_environment = default_environment or _default_environment_for(organization)
    _check_default_environment(organization, default_environment)
    project = Project(
        organization=organization,
        name=name,
        slug=slug,
        description=description,
        default_environment=default_environment,
    )
    audited_save(project, actor=actor, reason="project created")
    return project


@transaction.atomic
def project_update(*, actor: User, project: Project, **changes) -> Project:
    project = Project.objects.select_for_update().select_related("organization").get(pk=project.pk)
    require_org_admin(actor, project.organization, "change projects")
    _refuse_unknown(changes, PROJECT_FIELDS)
    if "default_environment" in changes:
        _check_default_environment(project.organization, changes["default_environment"])
    slug_taken = Project.objects.filter(organization=project.organization, slug=changes.get("slug")).exclude(
        pk=project.pk
    )
    if "slug" in changes and slug_taken.exists():
        raise Conflict(f"A project with slug '{changes['slug']}' exists.", fields={"slug": ["Already taken."]})
    audited_update(project, changes, actor=actor)
    return project


@transaction.atomic
def project_delete(*, actor: User, project: Project) -> None:
    require_org_admin(actor, project.organization, "delete projects")
    _delete_or_conflict(project, actor=actor, reason="project deleted")


@transaction.atomic
def pipeline_create(*, actor: User, project: Project, name: str, slug: str = "", description: str = "") -> Pipeline:
    if not is_org_member(actor, project.organization):
        raise PermissionDenied(f"You are not a member of '{project.organization.slug}'.")
    slug = slug or slugify(name)[:63]
    if Pipeline.objects.filter(project=project, slug=slug).exists():
        raise Conflict(f"A pipeline with slug '{slug}' exists in this project.", fields={"slug": ["Already taken."]})
    pipeline = Pipeline(project=project, name=name, slug=slug, description=description)
    audited_save(pipeline, actor=actor, reason="pipeline created")
    return pipeline


@transaction.atomic
def pipeline_update(*, actor: User, pipeline: Pipeline, **changes) -> Pipeline:
    pipeline = Pipeline.objects.select_for_update().select_related("project__organization").get(pk=pipeline.pk)
    if not is_org_member(actor, pipeline.project.organization):
        raise PermissionDenied(f"You are not a member of '{pipeline.project.organization.slug}'.")
    _refuse_unknown(changes, PIPELINE_FIELDS)
    slug_taken = Pipeline.objects.filter(project=pipeline.project, slug=changes.get("slug")).exclude(pk=pipeline.pk)
    if "slug" in changes and slug_taken.exists():
        raise Conflict(f"A pipeline with slug '{changes['slug']}' exists.", fields={"slug": ["Already taken."]})
    audited_update(pipeline, changes, actor=actor)
    return pipeline


@transaction.atomic
def pipeline_version_create(
    *, actor: User, pipeline: Pipeline, graph: dict, message: str = "", **git
) -> PipelineVersion:
    """Validate the graph and store it as the next version (never edits an existing one)."""
    pipeline = Pipeline.objects.select_for_update().select_related("project__organization").get(pk=pipeline.pk)
    if not is_org_member(actor, pipeline.project.organization):
        raise PermissionDenied(f"You are not a member of '{pipeline.project.organization.slug}'.")
    refuse_unknown(git, GIT_FIELDS)
    if git.get("git_commit") and not (isinstance(git["git_commit"], str) and GIT_COMMIT.fullmatch(git["git_commit"])):
        raise field_error("git_commit", "A commit SHA: 7 to 64 lower-case hex digits.")
    return _version_store(pipeline, graph, message=message, author=actor, git=git)


@transaction.atomic
def pipeline_version_record(*, pipeline: Pipeline, graph: dict, message: str = "", **git) -> PipelineVersion:
    """Store a version that a trusted source read (a Git sync on the worker, apps.repositories):
    the same validation as a hand-made one, and no acting user."""
    pipeline = Pipeline.objects.select_for_update().select_related("project__organization").get(pk=pipeline.pk)
    return _version_store(pipeline, graph, message=message, author=None, git={**git, "from_git": True})


def _version_store(pipeline: Pipeline, graph, *, message: str, author, git: dict) -> PipelineVersion:
    graphs.validate_graph(graph)
    for check in version_checks:
        check(pipeline, graph)
    top = pipeline.versions.aggregate(top=Max("number"))["top"] or 0
    version = PipelineVersion(
        pipeline=pipeline,
        number=top + 1,
        graph=graph,
        content_hash=graphs.content_hash(graph),
        author=author,
        message=message,
        **git,
    )
    validate(version, exclude=["content_hash"] if author is not None else ["content_hash", "author"])
    version.save()
    return version


def latest_version(pipeline: Pipeline) -> PipelineVersion | None:
    return pipeline.versions.order_by("-number").first()


def version_diff(before: PipelineVersion | None, after: PipelineVersion) -> dict:
    """Graph diff between two versions (before may be None: everything is added)."""
    result = graphs.diff(before.graph if before else None, after.graph)
    result["from_version"] = before.number if before else None
    result["to_version"] = after.number
    return result


@transaction.atomic
def pipeline_delete(*, actor: User, pipeline: Pipeline) -> None:
    if not is_org_admin(actor, pipeline.project.organization):
        raise PermissionDenied("Only organization owners and admins delete pipelines.")
    _delete_or_conflict(pipeline, actor=actor, reason="pipeline deleted")
