"""API for runs (create, list, detail, cancel, claim/report for external engines, preview),
deployments (history and direct deploys) and schedules. Views are thin: the services decide who
may and what is allowed; secrets appear only as references, except in a claim's configuration
for an engine whose owner may use the environment's credentials (the service decides)."""

from django_filters import rest_framework as filters
from django_filters.filterset import filterset_factory
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core import idempotency
from apps.core.actions import actions_field
from apps.core.api import (
    ID_SCHEMA,
    CursorPagination,
    IdFilter,
    StrictFilterBackend,
    StrictOrderingFilter,
    StrictSerializer,
    query_input,
)
from apps.core.errors import field_error
from apps.core.models import without_blobs
from apps.core.viewsets import ETagServiceViewSet, ServiceFamily, resolve_references
from apps.environments import permissions as perms
from apps.environments.api import environment_reference, environment_shown
from apps.pipelines.models import Pipeline
from apps.pipelines.selectors import get_pipeline_for_user, version_numbered
from apps.tenancy.api import user_shown

from . import selectors, services
from .engine_reports import RunReportSerializer
from .models import DEPLOYMENT_RECORD, RUN_LIFECYCLE, Deployment, Executor, Run, RunStatus, Schedule, Trigger

# --- shared lookups ---------------------------------------------------------------------------------


def _policed_environment(**kwargs):
    """An environment slug, resolved in the run's pipeline's organization with its runtime policy."""
    return environment_reference(related=("policy",), **kwargs)


def _resolved(serializer, fields, pipeline: Pipeline, user) -> dict:
    """A copy of `fields` (the serializer's valid input) with its environment slug resolved in the
    pipeline's organization."""
    return resolve_references(serializer, dict(fields), lambda: pipeline.project.organization_id, user)


def _claimer(request) -> str:
    """Who claims an external run: the API key's prefix, or the user name for a session."""
    key = request.auth
    return key.prefix if hasattr(key, "prefix") else request.user.get_username()


# The base of a response's row of a pipeline in an environment (a run, a deployment, a schedule, a
# trigger): the pipeline's slug and the environment's, besides the pipeline's id. (No docstring: the
# schema would show it as each serializer's description.)
class PipelineRowSerializer(serializers.ModelSerializer):
    pipeline_slug = serializers.CharField(source="pipeline.slug", read_only=True)
    environment = environment_shown()


class PipelineRowFilter(filters.FilterSet):
    """The base of the filters of a pipeline's rows in environments: the pipeline's id, the environment's slug."""

    pipeline = IdFilter(field_name="pipeline_id", help_text="Pipeline id.")
    environment = filters.CharFilter(field_name="environment__slug")


class PipelineRowViewSet(ETagServiceViewSet):
    """Schedules and triggers, a pipeline's rows in one environment: no search, ordered by when they
    were written, the 201 carrying the ETag, and the written row answered as the list reads it."""

    filter_backends = [StrictFilterBackend, StrictOrderingFilter]
    ordering_fields = ["created_at", "updated_at"]
    reread = ("create", "partial_update")
    etag_on_create = True


# --- runs ---------------------------------------------------------------------------------------------


class RunSerializer(PipelineRowSerializer):
    project = serializers.CharField(source="pipeline.project.slug", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    requested_by = user_shown()

    class Meta:
        model = Run
        fields = [
            "id",
            "pipeline",
            "pipeline_slug",
            "project",
            "version",
            "environment",
            "deployment",
            "trigger",
            "upstream",
            "executor",
            "status",
            "requested_by",
            "parameters",
            "sample",
            "error",
            *RUN_LIFECYCLE,
        ]
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    """A run with its measurements, its baseline comparison and the (redacted) configuration it used."""

    configuration = serializers.JSONField(source="resolved", read_only=True)
    actions = actions_field(services.RUN_ACTIONS, services.run_actions)

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "metrics", "baseline", "log_excerpt", "configuration", "actions"]
        read_only_fields = fields


class RunCreateSerializer(StrictSerializer):
    pipeline = serializers.IntegerField(min_value=1)
    environment = _policed_environment(required=False, help_text="Default: the project's default.")
    version = serializers.IntegerField(
        min_value=1, required=False, help_text="Default: the deployed version, else the latest."
    )
    parameters = serializers.DictField(required=False, default=dict, help_text="Run-time variable overrides.")
    sample = serializers.BooleanField(required=False, default=False)
    validation = serializers.BooleanField(
        required=False, default=False, help_text="A validation run (compared with the production baseline)."
    )
    executor = serializers.ChoiceField(choices=Executor.choices, required=False, default=Executor.BUILTIN)


ClaimResponse = inline_serializer(
    "RunClaim",
    {
        "run": RunDetailSerializer(),
        "configuration": serializers.JSONField(help_text="Secrets materialized only for credential holders."),
    },
)

PREVIEW_PARAMETERS = [
    OpenApiParameter("pipeline", ID_SCHEMA, required=True),
    OpenApiParameter("environment", str, required=True, description="Environment slug (never production)."),
    OpenApiParameter("node", str, required=True, description="Source node id."),
    OpenApiParameter(
        "limit", {"type": "integer", "minimum": 1, "maximum": 200}, description="Rows, 1 to 200 (default 20)."
    ),
]


class PreviewQuerySerializer(StrictSerializer):
    pipeline = serializers.IntegerField(min_value=1)
    environment = _policed_environment()
    node = serializers.CharField(max_length=200)
    limit = serializers.IntegerField(min_value=1, max_value=200, required=False, default=20)


class RunFilter(PipelineRowFilter):
    status = filters.ChoiceFilter(choices=RunStatus.choices)
    trigger = filters.ChoiceFilter(choices=Trigger.choices)
    executor = filters.ChoiceFilter(choices=Executor.choices)
    created_after = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Run
        fields = ["pipeline", "environment", "status", "trigger", "executor", "created_after", "created_before"]


class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs of pipelines in environments. Starting, cancelling, claiming and reporting take a
    `run`-scoped key (or a session); reading takes `read`."""

    pagination_class = CursorPagination  # large and append-mostly: no COUNT(*)
    queryset = Run.objects.none()
    serializer_class = RunSerializer
    filterset_class = RunFilter
    filter_backends = [StrictFilterBackend, StrictOrderingFilter]
    ordering_fields = ["created_at", "status"]  # a cursor orders by a column that is never null
    required_scopes = {
        "create": "run",
        "cancel": "run",
        "rerun": "run",
        "claim": "run",
        "report": "run",
        "preview": "run",
    }

    def get_queryset(self):
        if self.action in ("cancel", "rerun", "claim", "report"):
            return selectors.runs_for(self.request.user, (perms.VIEW, perms.RUN))
        runs = selectors.runs_for(self.request.user)
        return without_blobs(runs) if self.action == "list" else runs

    def get_serializer_class(self):
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    @extend_schema(
        request=RunCreateSerializer,
        parameters=[idempotency.IDEMPOTENCY_KEY_PARAMETER],
        responses={201: RunDetailSerializer, 200: RunDetailSerializer},
    )
    def create(self, request):
        """Start a run. A run the runtime policy forbids is recorded as `rejected` (still 201). With an
        Idempotency-Key, a retried POST returns the run started first (200)."""
        key = idempotency.key_from_headers(request)
        data = RunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pipeline = get_pipeline_for_user(request.user, data.validated_data["pipeline"], field="pipeline")
        fields = _resolved(data, data.validated_data, pipeline, request.user)
        if fields["validation"]:
            trigger = Trigger.VALIDATION
        else:
            trigger = Trigger.API if request.auth is not None else Trigger.MANUAL
        run, created = services.run_create_once(
            actor=request.user,
            pipeline=pipeline,
            idempotency_key=key,
            environment=fields.get("environment"),
            version=version_numbered(pipeline, fields.get("version")),
            parameters=fields["parameters"],
            sample=fields["sample"],
            trigger=trigger,
            executor_kind=fields["executor"],
        )
        return Response(self._detail(run), status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    def _detail(self, run: Run) -> dict:
        return RunDetailSerializer(run, context=self.get_serializer_context()).data

    @extend_schema(request=None, responses=RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """Cancel a queued run at once; a running one stops at its next batch."""
        run = services.run_cancel(actor=request.user, run=self.get_object())
        return Response(self._detail(self.get_queryset().get(pk=run.pk)))

    @extend_schema(request=None, responses={201: RunDetailSerializer})
    @action(detail=True, methods=["post"])
    def rerun(self, request, pk=None):
        """Start a new run like this finished one (same version, parameters, sample and executor)."""
        run = services.run_rerun(actor=request.user, run=self.get_object())
        return Response(self._detail(run), status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=ClaimResponse)
    @action(detail=True, methods=["post"])
    def claim(self, request, pk=None):
        """An external engine takes a queued external run and receives the configuration to run it with."""
        run, configuration = services.run_claim_external(
            actor=request.user, run=self.get_object(), claimer=_claimer(request)
        )
        run = self.get_queryset().get(pk=run.pk)
        response = Response({"run": self._detail(run), "configuration": configuration})
        response["Cache-Control"] = "no-store"
        return response

    @extend_schema(request=RunReportSerializer, responses=RunDetailSerializer)
    @action(detail=True, methods=["post"])
    def report(self, request, pk=None):
        """The claiming engine reports progress (`running` renews its lease) or the outcome."""
        data = RunReportSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        run = services.run_report_external(
            actor=request.user,
            run=self.get_object(),
            claimer=_claimer(request),
            status=fields["status"],
            metrics=fields.get("metrics"),
            log_excerpt=fields["log_excerpt"],
            error=fields["error"],
        )
        return Response(self._detail(self.get_queryset().get(pk=run.pk)))

    @extend_schema(
        parameters=PREVIEW_PARAMETERS,
        responses=inline_serializer(
            "RunPreview",
            {
                "version": serializers.IntegerField(),
                "node": serializers.CharField(),
                "columns": serializers.ListField(child=serializers.CharField()),
                "rows": serializers.ListField(child=serializers.ListField(child=serializers.JSONField())),
            },
        ),
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def preview(self, request):
        """The first rows of a source node, in a non-protected environment (never production)."""
        fields = query_input(PreviewQuerySerializer, request.query_params)
        pipeline = get_pipeline_for_user(request.user, fields["pipeline"], field="pipeline")
        fields = _resolved(PreviewQuerySerializer(), fields, pipeline, request.user)
        return Response(
            services.preview(
                actor=request.user,
                pipeline=pipeline,
                environment=fields["environment"],
                node_id=fields["node"],
                limit=fields["limit"],
            )
        )


# --- deployments -------------------------------------------------------------------------------------


class DeploymentSerializer(PipelineRowSerializer):
    version = serializers.IntegerField(source="version.number", read_only=True)
    deployed_by = user_shown()
    previous_version = serializers.IntegerField(source="previous.version.number", read_only=True, allow_null=True)
    actions = actions_field(services.DEPLOYMENT_ACTIONS, services.deployment_actions)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "pipeline",
            "pipeline_slug",
            *DEPLOYMENT_RECORD,
            "previous_version",
            "note",
            "created_at",
            "deactivated_at",
            "actions",
        ]
        read_only_fields = fields


class DeploymentCreateSerializer(StrictSerializer):
    pipeline = serializers.IntegerField(min_value=1)
    environment = _policed_environment()
    version = serializers.IntegerField(min_value=1, required=False, help_text="Default: the latest version.")


class DeploymentFilter(PipelineRowFilter):
    active = filters.BooleanFilter(field_name="is_active")

    class Meta:
        model = Deployment
        fields = ["pipeline", "environment", "active"]


class DeploymentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Which version runs where, with history. Creating one is a direct deploy, refused for
    protected stages and wherever approval rules apply (those go through promotions)."""

    queryset = Deployment.objects.none()
    serializer_class = DeploymentSerializer
    filterset_class = DeploymentFilter
    filter_backends = [StrictFilterBackend, StrictOrderingFilter]
    ordering_fields = ["created_at"]

    def get_queryset(self):
        deployments = selectors.deployments_for(self.request.user)
        return without_blobs(deployments) if self.action == "list" else deployments

    @extend_schema(request=DeploymentCreateSerializer, responses={201: DeploymentSerializer})
    def create(self, request):
        data = DeploymentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pipeline = get_pipeline_for_user(request.user, data.validated_data["pipeline"], field="pipeline")
        fields = _resolved(data, data.validated_data, pipeline, request.user)
        version = version_numbered(pipeline, fields.get("version")) or pipeline.versions.order_by("-number").first()
        if version is None:
            raise field_error("version", f"Pipeline '{pipeline.slug}' has no version yet.")
        deployment = services.deploy_direct(
            actor=request.user, pipeline=pipeline, environment=fields["environment"], version=version
        )
        return Response(
            DeploymentSerializer(self.get_queryset().get(pk=deployment.pk), context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )


# --- schedules ---------------------------------------------------------------------------------------


class ScheduleSerializer(PipelineRowSerializer):
    owner = user_shown()

    class Meta:
        model = Schedule
        fields = [
            "id",
            "pipeline",
            "pipeline_slug",
            "environment",
            "cron",
            "timezone",
            "enabled",
            "owner",
            "last_fired_for",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class ScheduleUpdateSerializer(StrictSerializer):
    cron = serializers.CharField(max_length=100, required=False)
    timezone = serializers.CharField(max_length=64, required=False)
    enabled = serializers.BooleanField(required=False)


class ScheduleCreateSerializer(ScheduleUpdateSerializer):
    pipeline = serializers.IntegerField(min_value=1)
    environment = _policed_environment()
    cron = serializers.CharField(max_length=100)


class ScheduleViewSet(PipelineRowViewSet):
    """Cron schedules of a pipeline in an environment (editing needs manage_schedules; in a locked
    environment, manage_environment too). Deploying into the environment switches them on."""

    serializer_class = ScheduleSerializer
    create_serializer_class = ScheduleCreateSerializer
    update_serializer_class = ScheduleUpdateSerializer
    filterset_class = filterset_factory(Schedule, PipelineRowFilter, ["pipeline", "environment", "enabled"])
    visible = selectors.schedules_for
    writes = ServiceFamily("schedule", delete=services.schedule_delete)

    def create_input(self, serializer, fields):
        pipeline = get_pipeline_for_user(self.request.user, fields["pipeline"], field="pipeline")
        return {**_resolved(serializer, fields, pipeline, self.request.user), "pipeline": pipeline}

    def create_object(self, fields):
        return services.schedule_save(
            actor=self.request.user,
            pipeline=fields["pipeline"],
            environment=fields["environment"],
            cron=fields["cron"],
            timezone_name=fields.get("timezone", "UTC"),
            enabled=fields.get("enabled"),
        )

    def update_object(self, schedule, fields):
        return services.schedule_save(
            actor=self.request.user,
            pipeline=schedule.pipeline,
            environment=schedule.environment,
            cron=fields.get("cron", schedule.cron),
            timezone_name=fields.get("timezone", schedule.timezone),
            enabled=fields.get("enabled"),
            schedule=schedule,
        )
