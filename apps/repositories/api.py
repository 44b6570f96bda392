"""API for repositories: CRUD with ETag (org owners and admins write), "sync now", and the provider
webhook, which authenticates by its signature (GitHub) or token (GitLab) rather than a user."""

from django.urls import reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers, status
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core import params
from apps.core.api import ADMIN_WRITES, StrictSerializer, VisibleRelatedField
from apps.core.filtersets import organization_filterset
from apps.core.openapi import signed
from apps.core.viewsets import ETagServiceViewSet, queued_action, service_family
from apps.pipelines.models import Pipeline
from apps.secrets.api import secret_reference, secret_shown

from . import selectors, services
from .models import Repository, RepositorySync


class SyncSerializer(serializers.ModelSerializer):
    class Meta:
        model = RepositorySync
        fields = ["state", "error", "head_commit", "versions_created", "requested_at", "started_at", "finished_at"]
        read_only_fields = fields


class RepositorySerializer(serializers.ModelSerializer):
    pipeline_slug = serializers.CharField(source="pipeline.slug", read_only=True)
    credential = secret_shown("credential")
    webhook_secret = secret_shown("webhook_secret")
    webhook_url = serializers.SerializerMethodField()
    sync = SyncSerializer(read_only=True)

    class Meta:
        model = Repository
        fields = [
            "id",
            "pipeline",
            "pipeline_slug",
            "clone_url",
            "default_branch",
            "definition_path",
            "credential",
            "webhook_secret",
            "webhook_url",
            "sync",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_webhook_url(self, obj) -> str:
        return reverse("repository-webhook", kwargs={"pk": obj.pk})


class RepositoryCreateSerializer(StrictSerializer):
    pipeline = VisibleRelatedField(Pipeline)
    clone_url = serializers.CharField(max_length=500)
    definition_path = serializers.CharField(max_length=500)
    default_branch = serializers.CharField(max_length=255, required=False, default="main")
    credential = secret_reference(required=False, allow_null=True, default=None)
    webhook_secret = secret_reference(required=False, allow_null=True, default=None)


class RepositoryUpdateSerializer(StrictSerializer):
    clone_url = serializers.CharField(max_length=500, required=False)
    definition_path = serializers.CharField(max_length=500, required=False)
    default_branch = serializers.CharField(max_length=255, required=False)
    credential = secret_reference(required=False, allow_null=True)
    webhook_secret = secret_reference(required=False, allow_null=True)


WEBHOOK_RESPONSE = inline_serializer("WebhookAccepted", {"status": serializers.CharField()})


class RepositoryViewSet(ETagServiceViewSet):
    """Git repositories that pipelines' versions come from. Credentials are secret references."""

    serializer_class = RepositorySerializer
    create_serializer_class = RepositoryCreateSerializer
    update_serializer_class = RepositoryUpdateSerializer
    filterset_class = organization_filterset(Repository, ["pipeline", "organization"], through="pipeline__project")
    ordering_fields = ["created_at", "updated_at"]
    required_scopes = ADMIN_WRITES
    visible = selectors.repositories_for
    writes = service_family(services, "repository")
    organization_through = "pipeline.project"
    reread = ("create", "partial_update")

    @queued_action(SyncSerializer)
    def sync(self, request, pk=None):
        """Queue a sync on the worker; poll the repository for its result."""
        return services.repository_sync_now(actor=request.user, repository=self.get_object())

    @extend_schema(
        request=None,
        responses={
            202: WEBHOOK_RESPONSE,
            200: WEBHOOK_RESPONSE,
        },
    )
    @action(detail=True, methods=["post"], authentication_classes=[], permission_classes=[permissions.AllowAny])
    @signed
    def webhook(self, request, pk=None):
        """A GitHub (X-Hub-Signature-256) or GitLab (X-Gitlab-Token) push or tag event: verified in
        constant time, replay-safe by delivery id, and answered by queueing a sync."""
        repository_pk = int(pk) if pk.isdigit() and int(pk) <= params.DB_INT_MAX else 0
        outcome = services.webhook_receive(repository_pk=repository_pk, headers=request.headers, body=request.body)
        code = status.HTTP_202_ACCEPTED if outcome == "queued" else status.HTTP_200_OK
        return Response({"status": outcome}, status=code)
