"""API for triggers: CRUD with ETag (the schedules' rule decides who may edit), and the public,
signed inbound webhook of a webhook trigger, which authenticates by its HMAC signature instead of
a user. Signing secrets appear only as references."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core import signing
from apps.core.api import IdFilter, StrictSerializer
from apps.core.openapi import signed
from apps.core.viewsets import service_family
from apps.environments.api import environment_reference
from apps.pipelines.selectors import get_pipeline_for_user
from apps.secrets.api import secret_reference, secret_shown
from apps.tenancy.api import user_shown

from . import selectors, services
from .api import PipelineRowFilter, PipelineRowSerializer, PipelineRowViewSet
from .models import PipelineTrigger, TriggerKind


class PipelineTriggerSerializer(PipelineRowSerializer):
    upstream_pipeline_slug = serializers.CharField(source="upstream_pipeline.slug", read_only=True, allow_null=True)
    signing_secret = secret_shown("signing_secret")
    hook_url = serializers.SerializerMethodField()
    owner = user_shown()

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

    def get_hook_url(self, obj) -> str | None:
        return services.trigger_hook_url(obj)


class PipelineTriggerUpdateSerializer(StrictSerializer):
    enabled = serializers.BooleanField(required=False)
    upstream_pipeline = serializers.IntegerField(min_value=1, required=False)
    signing_secret = secret_reference(required=False)


class PipelineTriggerCreateSerializer(PipelineTriggerUpdateSerializer):
    pipeline = serializers.IntegerField(min_value=1)
    environment = environment_reference()
    kind = serializers.ChoiceField(choices=TriggerKind.choices)


class PipelineTriggerFilter(PipelineRowFilter):
    upstream_pipeline = IdFilter(field_name="upstream_pipeline_id", help_text="Upstream pipeline id.")

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


class PipelineTriggerViewSet(PipelineRowViewSet):
    """Triggers of a pipeline in an environment: on success of another pipeline there, or on a signed
    webhook. Editing follows the schedules' rule (manage_schedules; in a locked environment,
    manage_environment too); in production and protected stages they are off until a deployment."""

    serializer_class = PipelineTriggerSerializer
    create_serializer_class = PipelineTriggerCreateSerializer
    update_serializer_class = PipelineTriggerUpdateSerializer
    filterset_class = PipelineTriggerFilter
    visible = selectors.triggers_for
    writes = service_family(services, "trigger")
    organization_through = "pipeline.project"

    def _upstream(self, fields: dict) -> dict:
        if "upstream_pipeline" in fields:
            fields["upstream_pipeline"] = get_pipeline_for_user(
                self.request.user, fields["upstream_pipeline"], field="upstream_pipeline"
            )
        return fields

    def create_input(self, serializer, fields):
        fields["pipeline"] = get_pipeline_for_user(self.request.user, fields["pipeline"], field="pipeline")
        return self._upstream(super().create_input(serializer, fields))

    def update_input(self, serializer, obj, fields):
        return self._upstream(super().update_input(serializer, obj, fields))

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
