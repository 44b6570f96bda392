"""Permission-filtered reads for projects and pipelines (visible to organization members)."""

from django.db.models import QuerySet

from apps.tenancy.permissions import api_key_of, member_organization_ids

from .models import Pipeline, PipelineVersion, Project


def _org_ids(user):
    if not user.is_authenticated:
        return set()
    if user.is_superuser and api_key_of(user) is None:
        return None
    return member_organization_ids(user)


def projects_for(user) -> QuerySet[Project]:
    qs = Project.objects.select_related("organization", "default_environment")
    ids = _org_ids(user)
    return qs if ids is None else qs.filter(organization_id__in=ids)


def pipelines_for(user) -> QuerySet[Pipeline]:
    qs = Pipeline.objects.select_related("project__organization")
    ids = _org_ids(user)
    return qs if ids is None else qs.filter(project__organization_id__in=ids)


def versions_of(pipeline) -> QuerySet[PipelineVersion]:
    return pipeline.versions.select_related("author").order_by("-number")
