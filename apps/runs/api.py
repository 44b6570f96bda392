"""API for runs (create, list, detail, cancel, claim/report for external engines, preview),
deployments (history and direct deploys) and schedules. Views are thin: the services decide who
may and what is allowed; secrets appear only as references, except in a claim's configuration
for an engine whose owner may use the environment's credentials (the service decides)."""

from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core import idempotency
from apps.core.actions import actions_schema
from apps.core.api import (
    ID_SCHEMA,
    CursorPagination,
    ETagMixin,
    IdFilter,
    StrictFilterBackend,
    StrictOrderingFilter,
    StrictSerializer,
    query_input,
)
from apps.core.errors import field_error
from apps.core.models import without_blobs
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline
from apps.pipelines.selectors import get_pipeline_for_user

from . import executor, profiles, selectors, services
from .models import Deployment, Executor, Run, RunStatus, Schedule, Trigger

# --- shared lookups ---------------------------------------------------------------------------------


def _environment(pipeline: Pipeline, slug: str | None, field: str = "environment") -> Environment | None:
    if slug is None:
        return None
    environment = (
        Environment.objects.select_related("policy")
        .filter(organization_id=pipeline.project.organization_id, slug=slug)
        .first()
    )
    if environment is None:
        raise field_error(field, f"No environment '{slug}' in this organization.")
    return environment


def _version(pipeline: Pipeline, number: int | None):
    if number is None:
        return None
    version = pipeline.versions.filter(number=number).first()
    if version is None:
        raise field_error("version", f"Pipeline '{pipeline.slug}' has no version {number}.")
    return version


def _claimer(request) -> str:
    """Who claims an external run: the API key's prefix, or the user name for a session."""
    key = request.auth
    return key.prefix if hasattr(key, "prefix") else request.user.get_username()


# --- runs ---------------------------------------------------------------------------------------------


class RunSerializer(serializers.ModelSerializer):
    pipeline_slug = serializers.CharField(source="pipeline.slug", read_only=True)
    project = serializers.CharField(source="pipeline.project.slug", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
            "claimed_by",
            "cancel_requested",
            "attempts",
            "created_at",
            "started_at",
            "finished_at",
        ]
        read_only_fields = fields


class RunDetailSerializer(RunSerializer):
    """A run with its measurements, its baseline comparison and the (redacted) configuration it used."""

    configuration = serializers.JSONField(source="resolved", read_only=True)
    actions = serializers.SerializerMethodField()

    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "metrics", "baseline", "log_excerpt", "configuration", "actions"]
        read_only_fields = fields

    @actions_schema(*services.RUN_ACTIONS)
    def get_actions(self, obj) -> dict:
        answers = services.run_actions(self.context["request"].user, obj)
        return {name: answer.as_dict() for name, answer in answers.items()}


class RunCreateSerializer(StrictSerializer):
    pipeline = serializers.IntegerField(min_value=1)
    environment = serializers.SlugField(max_length=63, required=False, help_text="Default: the project's default.")
    version = serializers.IntegerField(
        min_value=1, required=False, help_text="Default: the deployed version, else the latest."
    )
    parameters = serializers.DictField(required=False, default=dict, help_text="Run-time variable overrides.")
    sample = serializers.BooleanField(required=False, default=False)
    validation = serializers.BooleanField(
        required=False, default=False, help_text="A validation run (compared with the production baseline)."
    )
    executor = serializers.ChoiceField(choices=Executor.choices, required=False, default=Executor.BUILTIN)


class ProfileValueField(serializers.JSONField):
    """A canonical value of a profile: null, an integer or text (decimals and dates as text)."""

    def to_internal_value(self, data):
        if data is not None and (isinstance(data, bool) or not isinstance(data, int | str)):
            raise serializers.ValidationError("null, an integer or a string (decimals and dates as text).")
        if isinstance(data, str) and len(data) > profiles.TEXT_SHOWN + 1:
            raise serializers.ValidationError(f"At most {profiles.TEXT_SHOWN + 1} characters.")
        return data


class ColumnProfileSerializer(StrictSerializer):
    """One column's profile, the shape the built-in executor records (apps.runs.profiles)."""

    type = serializers.ChoiceField(choices=sorted(executor._TYPES))
    count = serializers.IntegerField(min_value=0, required=False)
    null_count = serializers.IntegerField(min_value=0)
    null_share = serializers.FloatField(min_value=0, max_value=1)
    distinct = serializers.IntegerField(min_value=0)
    min = ProfileValueField(required=False, allow_null=True)
    max = ProfileValueField(required=False, allow_null=True)
    hash = serializers.RegexField(r"^[0-9a-f]{16}\Z", help_text="Order-independent column hash, 16 hex digits.")
    sum = ProfileValueField(required=False, allow_null=True)
    mean = ProfileValueField(required=False, allow_null=True)
    min_length = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    max_length = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    unexpected_count = serializers.IntegerField(min_value=0, required=False)
    unexpected_sample = serializers.ListField(child=ProfileValueField(), required=False, max_length=5)
    duplicate_values = serializers.IntegerField(min_value=0, required=False)

    def validate(self, attrs):
        for name in ("sum", "mean"):
            value = attrs.get(name)
            if isinstance(value, str) and profiles.as_float(value) is None:
                raise serializers.ValidationError({name: "A number, or a decimal number as text."})
        if attrs.get("type") in profiles.NUMERIC and attrs.get("count", 1) and "sum" not in attrs:
            raise serializers.ValidationError({"sum": "Required for integer and number columns."})
        return attrs


class ColumnProfilesField(serializers.DictField):
    """Column name → profile (at most 500 columns, names of 1 to 63 characters)."""

    def __init__(self, **kwargs):
        super().__init__(child=ColumnProfileSerializer(), **kwargs)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            if len(data) > 500:
                raise serializers.ValidationError("At most 500 columns.")
            bad = [k for k in data if not isinstance(k, str) or not 0 < len(k) <= 63 or "\x00" in k]
            if bad:
                raise serializers.ValidationError(f"Column names are 1 to 63 characters: {str(bad[0])[:20]!r}.")
        return super().to_internal_value(data)


class DestinationMetricsSerializer(StrictSerializer):
    """Per destination, what the built-in executor measures (so baselines compare like with like)."""

    table = serializers.CharField(max_length=200, required=False)
    row_count = serializers.IntegerField(min_value=0)
    key = serializers.ListField(child=serializers.CharField(max_length=200), required=False, max_length=100)
    distinct_keys = serializers.IntegerField(min_value=0, required=False, allow_null=True)
    duplicate_key_count = serializers.IntegerField(min_value=0, required=False)
    duplicate_keys_sample = serializers.ListField(child=serializers.JSONField(), required=False, max_length=10)
    keys_unique = serializers.BooleanField(required=False, allow_null=True)
    hash_total = serializers.RegexField(r"^[0-9a-f]{16}\Z", help_text="Order-independent hash total, 16 hex digits.")
    columns = ColumnProfilesField(required=False, help_text="Column profiles, by column name.")


class RunReportSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=[RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED])
    metrics = serializers.DictField(child=DestinationMetricsSerializer(), required=False, allow_null=True)
    log_excerpt = serializers.CharField(
        max_length=20000, required=False, default="", allow_blank=True, trim_whitespace=False
    )
    error = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)


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
    environment = serializers.SlugField(max_length=63)
    node = serializers.CharField(max_length=200)
    limit = serializers.IntegerField(min_value=1, max_value=200, required=False, default=20)


class RunFilter(filters.FilterSet):
    pipeline = IdFilter(field_name="pipeline_id", help_text="Pipeline id.")
    environment = filters.CharFilter(field_name="environment__slug")
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
        fields = data.validated_data
        pipeline = get_pipeline_for_user(request.user, fields["pipeline"], field="pipeline")
        if fields["validation"]:
            trigger = Trigger.VALIDATION
        else:
            trigger = Trigger.API if request.auth is not None else Trigger.MANUAL
        run, created = services.run_create_once(
            actor=request.user,
            pipeline=pipeline,
            idempotency_key=key,
            environment=_environment(pipeline, fields.get("environment")),
            version=_version(pipeline, fields.get("version")),
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
        return Response(
            services.preview(
                actor=request.user,
                pipeline=pipeline,
                environment=_environment(pipeline, fields["environment"]),
                node_id=fields["node"],
                limit=fields["limit"],
            )
        )


# --- deployments -------------------------------------------------------------------------------------


class DeploymentSerializer(serializers.ModelSerializer):
    pipeline_slug = serializers.CharField(source="pipeline.slug", read_only=True)
    version = serializers.IntegerField(source="version.number", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    deployed_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    previous_version = serializers.IntegerField(source="previous.version.number", read_only=True, allow_null=True)
    actions = serializers.SerializerMethodField()

    class Meta:
        model = Deployment
        fields = [
            "id",
            "pipeline",
            "pipeline_slug",
            "version",
            "environment",
            "is_active",
            "deployed_by",
            "promotion_request_id",
            "previous",
            "previous_version",
            "note",
            "created_at",
            "deactivated_at",
            "actions",
        ]
        read_only_fields = fields

    @actions_schema(*services.DEPLOYMENT_ACTIONS)
    def get_actions(self, obj) -> dict:
        answers = services.deployment_actions(self.context["request"].user, obj)
        return {name: answer.as_dict() for name, answer in answers.items()}


class DeploymentCreateSerializer(StrictSerializer):
    pipeline = serializers.IntegerField(min_value=1)
    environment = serializers.SlugField(max_length=63)
    version = serializers.IntegerField(min_value=1, required=False, help_text="Default: the latest version.")


class DeploymentFilter(filters.FilterSet):
    pipeline = IdFilter(field_name="pipeline_id", help_text="Pipeline id.")
    environment = filters.CharFilter(field_name="environment__slug")
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
        fields = data.validated_data
        pipeline = get_pipeline_for_user(request.user, fields["pipeline"], field="pipeline")
        environment = _environment(pipeline, fields["environment"])
        version = _version(pipeline, fields.get("version")) or pipeline.versions.order_by("-number").first()
        if version is None:
            raise field_error("version", f"Pipeline '{pipeline.slug}' has no version yet.")
        deployment = services.deploy_direct(
            actor=request.user, pipeline=pipeline, environment=environment, version=version
        )
        return Response(
            DeploymentSerializer(self.get_queryset().get(pk=deployment.pk), context=self.get_serializer_context()).data,
            status=status.HTTP_201_CREATED,
        )


# --- schedules ---------------------------------------------------------------------------------------


class ScheduleSerializer(serializers.ModelSerializer):
    pipeline_slug = serializers.CharField(source="pipeline.slug", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)

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
    environment = serializers.SlugField(max_length=63)
    cron = serializers.CharField(max_length=100)


class ScheduleFilter(filters.FilterSet):
    pipeline = IdFilter(field_name="pipeline_id", help_text="Pipeline id.")
    environment = filters.CharFilter(field_name="environment__slug")

    class Meta:
        model = Schedule
        fields = ["pipeline", "environment", "enabled"]


class ScheduleViewSet(ETagMixin, viewsets.ModelViewSet):
    """Cron schedules of a pipeline in an environment (editing needs manage_schedules; in a locked
    environment, manage_environment too). Deploying into the environment switches them on."""

    queryset = Schedule.objects.none()
    serializer_class = ScheduleSerializer
    filterset_class = ScheduleFilter
    filter_backends = [StrictFilterBackend, StrictOrderingFilter]
    ordering_fields = ["created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.schedules_for(self.request.user)

    @extend_schema(request=ScheduleCreateSerializer, responses={201: ScheduleSerializer})
    def create(self, request):
        data = ScheduleCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        pipeline = get_pipeline_for_user(request.user, fields["pipeline"], field="pipeline")
        schedule = services.schedule_save(
            actor=request.user,
            pipeline=pipeline,
            environment=_environment(pipeline, fields["environment"]),
            cron=fields["cron"],
            timezone_name=fields.get("timezone", "UTC"),
            enabled=fields.get("enabled"),
        )
        schedule = self.get_queryset().get(pk=schedule.pk)
        return self.with_etag(Response(ScheduleSerializer(schedule).data, status=status.HTTP_201_CREATED), schedule)

    @extend_schema(request=ScheduleUpdateSerializer, responses=ScheduleSerializer)
    def partial_update(self, request, pk=None):
        data = ScheduleUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        with transaction.atomic():
            schedule = self.locked_object()
            schedule = services.schedule_save(
                actor=request.user,
                pipeline=schedule.pipeline,
                environment=schedule.environment,
                cron=fields.get("cron", schedule.cron),
                timezone_name=fields.get("timezone", schedule.timezone),
                enabled=fields.get("enabled"),
                schedule=schedule,
            )
        schedule = self.get_queryset().get(pk=schedule.pk)
        return self.with_etag(Response(ScheduleSerializer(schedule).data), schedule)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.schedule_delete(actor=request.user, schedule=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)
