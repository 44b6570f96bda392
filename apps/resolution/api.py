"""Read endpoints of resolution: resolve, diff, readiness (per pipeline) and the matrix (per project)."""

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from apps.core import params
from apps.core.errors import ValidationFailed, field_error
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline, Project
from apps.pipelines.selectors import get_pipeline_for_user, get_project_for_user, pipelines_for, projects_for

from . import selectors, services

ENV = OpenApiParameter("environment", str, required=True, description="Environment slug.")
VERSION_MAX = 2**31 - 1  # the version number column's range
VERSION = OpenApiParameter(
    "version",
    {"type": "integer", "minimum": 1, "maximum": VERSION_MAX},
    description="Version number (default: the latest).",
)
PAGE = OpenApiParameter(
    "page", {"type": "integer", "minimum": 1, "maximum": VERSION_MAX}, description="Page of variables (default 1)."
)
PAGE_SIZE = OpenApiParameter(
    "page_size",
    {"type": "integer", "minimum": 1, "maximum": services.MAX_ROWS_PER_PAGE},
    description=f"Variables per page (default {services.ROWS_PER_PAGE}).",
)
AS_OF = OpenApiParameter("as_of", OpenApiTypes.DATETIME, description="Rebuild the answer as of this moment.")


def _environment(organization_id, slug, field="environment"):
    if slug:
        params.parse_text(slug, field)
    if not slug:
        raise field_error(field, "Give an environment slug.")
    environment = (
        Environment.objects.select_related("policy").filter(organization_id=organization_id, slug=slug).first()
    )
    if environment is None:
        raise field_error(field, f"No environment '{slug}' in this organization.")
    return environment


def _version(pipeline, query_params):
    number = params.optional(query_params, "version", params.parse_whole_number, minimum=1, maximum=VERSION_MAX)
    if number is None:
        return None
    version = pipeline.versions.filter(number=number).first()
    if version is None:
        raise field_error("version", f"Pipeline '{pipeline.slug}' has no version {number}.")
    return version


def _rows_page(query_params) -> dict:
    """The page of variables a matrix or a diff shows: page and page_size, bounded (400 naming them)."""
    return {
        "page": params.optional(query_params, "page", params.parse_whole_number, minimum=1, maximum=VERSION_MAX) or 1,
        "page_size": params.optional(
            query_params, "page_size", params.parse_whole_number, minimum=1, maximum=services.MAX_ROWS_PER_PAGE
        )
        or services.ROWS_PER_PAGE,
    }


def _well_formed_target(user, pk, query_params) -> selectors.Target | None:
    """The resolve target in one query (selectors.resolve_target) when the request is well formed
    and asks for the live answer; None otherwise, for the lookups above to answer (and to report a
    bad parameter after the pipeline's 404, as always)."""
    slug = query_params.get("environment")
    if not slug or len(slug) > params.MAX_QUERY_VALUE_LENGTH or query_params.get("as_of") not in (None, ""):
        return None
    try:
        number = params.optional(query_params, "version", params.parse_whole_number, minimum=1, maximum=VERSION_MAX)
    except ValidationFailed:
        return None
    return selectors.resolve_target(user, pk, slug, number)


class PipelineResolutionViewSet(viewsets.GenericViewSet):
    """What a pipeline resolves to per environment (secrets appear as references)."""

    queryset = Pipeline.objects.none()

    def get_queryset(self):
        return pipelines_for(self.request.user)

    @extend_schema(parameters=[ENV, VERSION, AS_OF], responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def resolve(self, request, pk=None):
        target = _well_formed_target(request.user, pk, request.query_params)
        if target is not None and request.accepted_media_type == JSONRenderer.media_type:
            # The common request: one query, then the answer's JSON as cached.
            renderer = request.accepted_renderer
            body = services.resolve_encoded_for(
                request.user,
                target.pipeline,
                target.environment,
                version=target.version,
                revision=target.revision,
                encode=lambda answer: renderer.render(answer, renderer.media_type, {}),
            )
            return HttpResponse(body, content_type=renderer.media_type)
        if target is not None:  # the browsable API
            return Response(
                services.resolve_for(
                    request.user, target.pipeline, target.environment, version=target.version, revision=target.revision
                )
            )
        pipeline = get_pipeline_for_user(request.user, pk)
        org = pipeline.project.organization_id
        answer = services.resolve_for(
            request.user,
            pipeline,
            _environment(org, request.query_params.get("environment")),
            version=_version(pipeline, request.query_params),
            as_of=params.optional(request.query_params, "as_of", params.parse_moment),
        )
        return Response(answer)

    @extend_schema(
        parameters=[
            OpenApiParameter("from", str, required=True, description="Left environment slug."),
            OpenApiParameter("to", str, required=True, description="Right environment slug."),
            VERSION,
            PAGE,
            PAGE_SIZE,
        ],
        responses=OpenApiTypes.OBJECT,
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, pk=None):
        pipeline = get_pipeline_for_user(request.user, pk)
        org = pipeline.project.organization_id
        return Response(
            services.environment_diff(
                request.user,
                pipeline,
                _environment(org, request.query_params.get("from"), "from"),
                _environment(org, request.query_params.get("to"), "to"),
                version=_version(pipeline, request.query_params),
                **_rows_page(request.query_params),
            )
        )

    @extend_schema(parameters=[ENV, VERSION], responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def readiness(self, request, pk=None):
        pipeline = get_pipeline_for_user(request.user, pk)
        org = pipeline.project.organization_id
        return Response(
            services.readiness(
                request.user,
                pipeline,
                _environment(org, request.query_params.get("environment")),
                version=_version(pipeline, request.query_params),
            )
        )


class ProjectMatrixViewSet(viewsets.GenericViewSet):
    """Variables × environments for a project."""

    queryset = Project.objects.none()

    def get_queryset(self):
        return projects_for(self.request.user)

    @extend_schema(parameters=[PAGE, PAGE_SIZE], responses=OpenApiTypes.OBJECT)
    @action(detail=True, methods=["get"])
    def matrix(self, request, pk=None):
        project = get_project_for_user(request.user, pk)
        return Response(services.matrix(request.user, project, **_rows_page(request.query_params)))
