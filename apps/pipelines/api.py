"""API for projects, pipelines and their immutable versions."""

from django.db import transaction
from django.shortcuts import get_object_or_404
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import ETagMixin, StrictSerializer, VisibleRelatedField
from apps.core.errors import field_error
from apps.core.models import without_blobs
from apps.environments.models import Environment
from apps.tenancy.api import MemberOrganizationField

from . import selectors, services
from .models import Pipeline, PipelineVersion, Project


class ProjectSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    default_environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)

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
    default_environment = serializers.SlugField(max_length=63, required=False, allow_null=True)


class ProjectUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False)
    slug = serializers.SlugField(max_length=63, required=False)
    description = serializers.CharField(max_length=4000, required=False, allow_blank=True)
    default_environment = serializers.SlugField(max_length=63, required=False, allow_null=True)


def _environment(organization, slug):
    if slug is None:
        return None
    environment = Environment.objects.filter(organization=organization, slug=slug).first()
    if environment is None:
        raise field_error("default_environment", f"No environment '{slug}' in this organization.")
    return environment


class ProjectFilter(filters.FilterSet):
    organization = filters.CharFilter(field_name="organization__slug")

    class Meta:
        model = Project
        fields = ["organization", "slug"]


class ProjectViewSet(ETagMixin, viewsets.ModelViewSet):
    """Projects group pipelines; their default environment is used when a run names none."""

    queryset = Project.objects.none()
    serializer_class = ProjectSerializer
    filterset_class = ProjectFilter
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.projects_for(self.request.user)

    @extend_schema(request=ProjectWriteSerializer, responses={201: ProjectSerializer})
    def create(self, request):
        data = ProjectWriteSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        if "default_environment" in fields:
            fields["default_environment"] = _environment(fields["organization"], fields["default_environment"])
        project = services.project_create(actor=request.user, **fields)
        return Response(ProjectSerializer(project).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ProjectUpdateSerializer, responses=ProjectSerializer)
    def partial_update(self, request, pk=None):
        data = ProjectUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            project = self.locked_object()
            fields = dict(data.validated_data)
            if "default_environment" in fields:
                fields["default_environment"] = _environment(project.organization, fields["default_environment"])
            project = services.project_update(actor=request.user, project=project, **fields)
        return self.with_etag(Response(ProjectSerializer(self.get_queryset().get(pk=project.pk)).data), project)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.project_delete(actor=request.user, project=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


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
    author = serializers.SlugRelatedField(slug_field="username", read_only=True)
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
            "git_repository",
            "git_commit",
            "git_branch",
            "git_tag",
            "git_merged",
            "compare_url",
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


class PipelineFilter(filters.FilterSet):
    organization = filters.CharFilter(field_name="project__organization__slug")

    class Meta:
        model = Pipeline
        fields = ["organization", "project", "slug"]


class PipelineViewSet(ETagMixin, viewsets.ModelViewSet):
    """Pipelines and their versions (immutable: a change is a new version)."""

    queryset = Pipeline.objects.none()
    serializer_class = PipelineSerializer
    filterset_class = PipelineFilter
    search_fields = ["name", "slug"]
    ordering_fields = ["name", "created_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        from django.db.models import Max

        # Meta.ordering does not apply to GROUP BY queries: order explicitly, or pages overlap.
        return (
            selectors.pipelines_for(self.request.user)
            .annotate(latest_number=Max("versions__number"))
            .order_by("project__name", "name", "pk")
        )

    @extend_schema(request=PipelineWriteSerializer, responses={201: PipelineSerializer})
    def create(self, request):
        data = PipelineWriteSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        pipeline = services.pipeline_create(actor=request.user, **fields)
        return Response(PipelineSerializer(pipeline).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PipelineUpdateSerializer, responses=PipelineSerializer)
    def partial_update(self, request, pk=None):
        data = PipelineUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            pipeline = services.pipeline_update(
                actor=request.user, pipeline=self.locked_object(), **data.validated_data
            )
        return self.with_etag(Response(PipelineSerializer(self.get_queryset().get(pk=pipeline.pk)).data), pipeline)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.pipeline_delete(actor=request.user, pipeline=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

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
