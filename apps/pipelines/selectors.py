"""Permission-filtered reads for projects and pipelines (visible to organization members)."""

from django.db.models import QuerySet

from .models import Pipeline, PipelineVersion, Project


def projects_for(user) -> QuerySet[Project]:
    return Project.objects.restrict(user).select_related("organization", "default_environment")


def pipelines_for(user) -> QuerySet[Pipeline]:
    return Pipeline.objects.restrict(user).select_related("project__organization")


def _is_id(pk) -> bool:
    return isinstance(pk, int) or (isinstance(pk, str) and pk.isascii() and pk.isdigit() and len(pk) <= 18)


def get_project_for_user(user, pk) -> Project:
    """The project `pk` if the user may see it, else a 404 "No such project." (also for a missing id)."""
    from apps.core.errors import NotFound

    project = projects_for(user).filter(pk=pk).first() if _is_id(pk) else None
    if project is None:
        raise NotFound("No such project.")
    return project


def get_pipeline_for_user(user, pk, *, field: str | None = None) -> Pipeline:
    """The pipeline `pk` if the user may see it. Otherwise "No such pipeline.", the same for a missing
    id: a 400 naming `field` when the id came in a request body, else a 404."""
    from apps.core.errors import NotFound, field_error

    pipeline = pipelines_for(user).filter(pk=pk).first() if _is_id(pk) else None
    if pipeline is None:
        raise field_error(field, "No such pipeline.") if field else NotFound("No such pipeline.")
    return pipeline


def versions_of(pipeline) -> QuerySet[PipelineVersion]:
    return pipeline.versions.select_related("author").order_by("-number")


def pipeline_by_reference(user, reference: str) -> Pipeline:
    """A pipeline the user can see, named by id or by `project-slug/pipeline-slug` (for the CLI)."""
    from apps.core.errors import NotFound, field_error

    visible = pipelines_for(user)
    if reference.isdigit():
        found = visible.filter(pk=int(reference)).first()
    elif reference.count("/") == 1:
        project_slug, pipeline_slug = reference.split("/")
        matches = list(visible.filter(project__slug=project_slug, slug=pipeline_slug)[:2])
        if len(matches) > 1:
            raise field_error(
                "pipeline", f"'{reference}' names pipelines in several organizations; give the pipeline id."
            )
        found = matches[0] if matches else None
    else:
        raise field_error("pipeline", f"Give a pipeline id or project-slug/pipeline-slug, not '{reference}'.")
    if found is None:
        raise NotFound(f"No pipeline '{reference}' that this user can see.")
    return found


def version_numbered(pipeline: Pipeline, number: int | None, *, field: str = "version") -> PipelineVersion | None:
    """The pipeline's version `number` (None for None), or a 400 naming `field`: how every API body
    and query names a version."""
    from apps.core.errors import field_error

    if number is None:
        return None
    version = pipeline.versions.filter(number=number).first()
    if version is None:
        raise field_error(field, f"Pipeline '{pipeline.slug}' has no version {number}.")
    return version
