"""API for projects, pipelines and their immutable versions."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import StrictSerializer, VisibleRelatedField
from apps.core.filtersets import organization_filterset
from apps.core.models import without_blobs
from apps.core.viewsets import ETagServiceViewSet, service_family
from apps.environments.api import environment_reference, environment_shown
from apps.tenancy.api import MemberOrganizationField, organization_shown, user_shown

from . import selectors, services
from .models import VERSION_PROVENANCE, Pipeline, PipelineVersion, Project


class ProjectSerializer(serializers.ModelSerializer):
    organization = organization_shown()
    default_environment = environment_shown()

    class Meta:
        model = Project
        fields = [
            "id",
            "organization",
            "name",
            "slug",
            "description",
            "default_environment",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ProjectWriteSerializer(StrictSerializer):
    organization = MemberOrganizationField()
    name = serializers.CharField(max_length=120)
    slug = serializers.SlugField(max_length=63, required=False, default="")
    description = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)
    default_environment = environment_reference(required=False, allow_null=True)


class ProjectUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False)
    slug = serializers.SlugField(max_length=63, required=False)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    default_environment = environment_reference(required=False, allow_null=True)


class ProjectViewSet(ETagServiceViewSet):
    """Projects group pipelines; their default environment is used when a run names none."""

    serializer_class = ProjectSerializer
    create_serializer_class = ProjectWriteSerializer
    update_serializer_class = ProjectUpdateSerializer
    filterset_class = organization_filterset(Project, ["organization", "slug"])
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "created_at"]
    visible = selectors.projects_for
    writes = service_family(services, "project")
    reread = ("partial_update",)


class PipelineSerializer(serializers.ModelSerializer):
    project = serializers.PrimaryKeyRelatedField(read_only=True)
    latest_version = serializers.SerializerMethodField()

    class Meta:
        model = Pipeline
        fields = ["id", "project", "name", "slug", "description", "latest_version", "created_at", "updated_at"]
        read_only_fields = fields

    def get_latest_version(self, obj) -> int | None:
        return getattr(obj, "latest_number", None)


class PipelineWriteSerializer(StrictSerializer):
    project = VisibleRelatedField(Project)
    name = serializers.CharField(max_length=120)
    slug = serializers.SlugField(max_length=63, required=False, default="")
    description = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)


class PipelineUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False)
    slug = serializers.SlugField(max_length=63, required=False)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)


class PipelineVersionSerializer(serializers.ModelSerializer):
    author = user_shown()
    provenance = serializers.CharField(read_only=True, help_text="'from Git' (a repository sync) or 'not from Git'.")

    class Meta:
        model = PipelineVersion
        fields = [
            "id",
            "number",
            "graph",
            "content_hash",
            "author",
            "message",
            *VERSION_PROVENANCE,
            "from_git",
            "provenance",
            "created_at",
        ]
        read_only_fields = fields


class PipelineVersionListSerializer(PipelineVersionSerializer):
    """A version as the list shows it: no graph (read one version for it)."""

    class Meta(PipelineVersionSerializer.Meta):
        fields = [name for name in PipelineVersionSerializer.Meta.fields if name != "graph"]
        read_only_fields = fields


class PipelineVersionCreateSerializer(StrictSerializer):
    graph = serializers.JSONField()
    message = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    git_repository = serializers.CharField(max_length=500, required=False, default="", allow_blank=True)
    git_commit = serializers.RegexField(r"^[0-9a-f]{7,64}$", required=False, default="", allow_blank=True)
    git_branch = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)
    git_tag = serializers.CharField(max_length=255, required=False, default="", allow_blank=True)
    git_merged = serializers.BooleanField(required=False, default=False)
    compare_url = serializers.URLField(max_length=1000, required=False, default="", allow_blank=True)


class PipelineViewSet(ETagServiceViewSet):
    """Pipelines and their versions (immutable: a change is a new version)."""

    serializer_class = PipelineSerializer
    create_serializer_class = PipelineWriteSerializer
    update_serializer_class = PipelineUpdateSerializer
    filterset_class = organization_filterset(Pipeline, ["organization", "project", "slug"], through="project")
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "created_at"]
    writes = service_family(services, "pipeline")
    reread = ("partial_update",)

    def get_queryset(self):
        from django.db.models import Max

        # Meta.ordering does not apply to GROUP BY queries: order explicitly, or pages overlap.
        return (
            selectors.pipelines_for(self.request.user)
            .annotate(latest_number=Max("versions__number"))
            .order_by("project__name", "name", "pk")
        )

    @extend_schema(methods=["GET"], responses=PipelineVersionListSerializer(many=True))
    @extend_schema(
        methods=["POST"], request=PipelineVersionCreateSerializer, responses={201: PipelineVersionSerializer}
    )
    @action(detail=True, methods=["get", "post"])
    def versions(self, request, pk=None):
        """List versions, or store a new one (the graph is validated; errors name node and field)."""
        pipeline = self.get_object()
        if request.method == "GET":
            page = self.paginate_queryset(without_blobs(selectors.versions_of(pipeline)))
            return self.get_paginated_response(PipelineVersionListSerializer(page, many=True).data)
        data = PipelineVersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        version = services.pipeline_version_create(actor=request.user, pipeline=pipeline, **data.validated_data)
        return Response(PipelineVersionSerializer(version).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("number", int, OpenApiParameter.PATH)], responses=PipelineVersionSerializer
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>[0-9]+)")
    def version_detail(self, request, pk=None, number=None):
        pipeline = self.get_object()
        version = get_object_or_404(selectors.versions_of(pipeline), number=int(number))
        return Response(PipelineVersionSerializer(version).data)
