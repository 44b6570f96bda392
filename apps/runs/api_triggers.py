"""API for triggers: CRUD with ETag (the schedules' rule decides who may edit), and the public,
signed inbound webhook of a webhook trigger, which authenticates by its HMAC signature instead of
a user. Signing secrets appear only as references."""

from django.db import transaction
from django_filters import rest_framework as filters
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core import signing
from apps.core.api import ETagMixin, IdFilter, StrictFilterBackend, StrictOrderingFilter, StrictSerializer
from apps.core.openapi import signed
from apps.pipelines.selectors import get_pipeline_for_user
from apps.secrets.selectors import secret_named

from . import selectors, services
from .api import _environment
from .models import PipelineTrigger, TriggerKind


class PipelineTriggerSerializer(serializers.ModelSerializer):
    pipeline_slug = serializers.CharField(source="pipeline.slug", read_only=True)
    environment = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    upstream_pipeline_slug = serializers.CharField(source="upstream_pipeline.slug", read_only=True, allow_null=True)
    signing_secret = serializers.SerializerMethodField()
    hook_url = serializers.SerializerMethodField()
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = PipelineTrigger
        fields = [
            "id",
            "pipeline",
            "pipeline_slug",
            "environment",
            "kind",
            "upstream_pipeline",
            "upstream_pipeline_slug",
            "signing_secret",
            "hook_url",
            "enabled",
            "switched_on_by",
            "owner",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_signing_secret(self, obj) -> str | None:
        return obj.signing_secret.display_reference if obj.signing_secret_id else None

    def get_hook_url(self, obj) -> str | None:
        return services.trigger_hook_url(obj)


class PipelineTriggerUpdateSerializer(StrictSerializer):
    enabled = serializers.BooleanField(required=False)
    upstream_pipeline = serializers.IntegerField(min_value=1, required=False)
    signing_secret = serializers.CharField(max_length=64, required=False)


class PipelineTriggerCreateSerializer(PipelineTriggerUpdateSerializer):
    pipeline = serializers.IntegerField(min_value=1)
    environment = serializers.SlugField(max_length=63)
    kind = serializers.ChoiceField(choices=TriggerKind.choices)


class PipelineTriggerFilter(filters.FilterSet):
    pipeline = IdFilter(field_name="pipeline_id", help_text="Pipeline id.")
    upstream_pipeline = IdFilter(field_name="upstream_pipeline_id", help_text="Upstream pipeline id.")
    environment = filters.CharFilter(field_name="environment__slug")

    class Meta:
        model = PipelineTrigger
        fields = ["pipeline", "upstream_pipeline", "environment", "kind", "enabled"]


HOOK_RESPONSE = inline_serializer(
    "TriggerHookAccepted", {"status": serializers.CharField(), "run": serializers.IntegerField()}
)
HOOK_BODY = inline_serializer(
    "TriggerHookBody", {"parameters": serializers.DictField(required=False, help_text="Run-time parameters.")}
)
SIGNATURE_HEADERS = [
    OpenApiParameter(
        signing.TIMESTAMP_HEADER, str, OpenApiParameter.HEADER, required=True, description="Unix seconds when signed."
    ),
    OpenApiParameter(
        signing.SIGNATURE_HEADER,
        str,
        OpenApiParameter.HEADER,
        required=True,
        description='"sha256=" + hex(HMAC-SHA256(signing secret, f"{timestamp}.{body}")).',
    ),
]


class PipelineTriggerViewSet(ETagMixin, viewsets.ModelViewSet):
    """Triggers of a pipeline in an environment: on success of another pipeline there, or on a signed
    webhook. Editing follows the schedules' rule (manage_schedules; in a locked environment,
    manage_environment too); in production and protected stages they are off until a deployment."""

    queryset = PipelineTrigger.objects.none()
    serializer_class = PipelineTriggerSerializer
    filterset_class = PipelineTriggerFilter
    filter_backends = [StrictFilterBackend, StrictOrderingFilter]
    ordering_fields = ["created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return selectors.triggers_for(self.request.user)

    def _related(self, fields: dict, organization) -> dict:
        changes: dict[str, object] = {}
        if "upstream_pipeline" in fields:
            changes["upstream_pipeline"] = get_pipeline_for_user(
                self.request.user, fields["upstream_pipeline"], field="upstream_pipeline"
            )
        if "signing_secret" in fields:
            changes["signing_secret"] = secret_named(organization, fields["signing_secret"], "signing_secret")
        if "enabled" in fields:
            changes["enabled"] = fields["enabled"]
        return changes

    @extend_schema(request=PipelineTriggerCreateSerializer, responses={201: PipelineTriggerSerializer})
    def create(self, request):
        data = PipelineTriggerCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        fields = data.validated_data
        pipeline = get_pipeline_for_user(request.user, fields["pipeline"], field="pipeline")
        trigger = services.trigger_create(
            actor=request.user,
            pipeline=pipeline,
            environment=_environment(pipeline, fields["environment"]),
            kind=fields["kind"],
            **self._related(fields, pipeline.project.organization),
        )
        trigger = self.get_queryset().get(pk=trigger.pk)
        return self.with_etag(
            Response(PipelineTriggerSerializer(trigger).data, status=status.HTTP_201_CREATED), trigger
        )

    @extend_schema(request=PipelineTriggerUpdateSerializer, responses=PipelineTriggerSerializer)
    def partial_update(self, request, pk=None):
        data = PipelineTriggerUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            trigger = self.locked_object()
            trigger = services.trigger_update(
                actor=request.user,
                trigger=trigger,
                **self._related(data.validated_data, trigger.pipeline.project.organization),
            )
        trigger = self.get_queryset().get(pk=trigger.pk)
        return self.with_etag(Response(PipelineTriggerSerializer(trigger).data), trigger)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.trigger_delete(actor=request.user, trigger=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(
        operation_id="triggers_hook",
        request=HOOK_BODY,
        parameters=[
            OpenApiParameter("token", str, OpenApiParameter.PATH, description="The webhook trigger's token."),
            *SIGNATURE_HEADERS,
        ],
        responses={202: HOOK_RESPONSE},
    )
    @action(
        detail=False,
        methods=["post"],
        url_path=r"hooks/(?P<token>[A-Za-z0-9_-]{1,64})",
        url_name="hook",
        authentication_classes=[],
        permission_classes=[permissions.AllowAny],
    )
    @signed
    def hook(self, request, token=None):
        """A signed delivery to a webhook trigger: verified in constant time, refused when stale or
        replayed (401, nothing written), and answered with the run it started."""
        run = services.trigger_webhook_receive(token=token or "", headers=request.headers, body=request.body)
        return Response({"status": run.status, "run": run.pk}, status=status.HTTP_202_ACCEPTED)
