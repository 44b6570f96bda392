"""API for repositories: CRUD with ETag (org owners and admins write), "sync now", and the provider
webhook, which authenticates by its signature (GitHub) or token (GitLab) rather than a user."""

from django.db import transaction
from django.urls import reverse
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import permissions, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core import params
from apps.core.api import ETagMixin, StrictSerializer, VisibleRelatedField
from apps.core.openapi import signed
from apps.pipelines.models import Pipeline
from apps.secrets.selectors import secret_named

from . import selectors, services
from .models import Repository, RepositorySync


class SyncSerializer(serializers.ModelSerializer):
    class Meta:
        model = RepositorySync
        fields = ["state", "error", "head_commit", "versions_created", "requested_at", "started_at", "finished_at"]
        read_only_fields = fields


class RepositorySerializer(serializers.ModelSerializer):
    pipeline_slug = serializers.CharField(source="pipeline.slug", read_only=True)
    credential = serializers.SerializerMethodField()
    webhook_secret = serializers.SerializerMethodField()
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

    def get_credential(self, obj) -> str | None:
        return obj.credential.display_reference if obj.credential_id else None

    def get_webhook_secret(self, obj) -> str | None:
        return obj.webhook_secret.display_reference if obj.webhook_secret_id else None

    def get_webhook_url(self, obj) -> str:
        return reverse("repository-webhook", kwargs={"pk": obj.pk})


class RepositoryCreateSerializer(StrictSerializer):
    pipeline = VisibleRelatedField(Pipeline)
    clone_url = serializers.CharField(max_length=500)
    definition_path = serializers.CharField(max_length=500)
    default_branch = serializers.CharField(max_length=255, required=False, default="main")
    credential = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)
    webhook_secret = serializers.CharField(max_length=64, required=False, allow_null=True, default=None)


class RepositoryUpdateSerializer(StrictSerializer):
    clone_url = serializers.CharField(max_length=500, required=False)
    definition_path = serializers.CharField(max_length=500, required=False)
    default_branch = serializers.CharField(max_length=255, required=False)
    credential = serializers.CharField(max_length=64, required=False, allow_null=True)
    webhook_secret = serializers.CharField(max_length=64, required=False, allow_null=True)


class RepositoryFilter(filters.FilterSet):
    organization = filters.CharFilter(field_name="pipeline__project__organization__slug")

    class Meta:
        model = Repository
        fields = ["pipeline", "organization"]


def _with_secrets(organization, fields: dict) -> dict:
    for name in ("credential", "webhook_secret"):
        if name in fields:
            fields[name] = secret_named(organization, fields[name], name)
    return fields


WEBHOOK_RESPONSE = inline_serializer("WebhookAccepted", {"status": serializers.CharField()})


class RepositoryViewSet(ETagMixin, viewsets.ModelViewSet):
    """Git repositories that pipelines' versions come from. Credentials are secret references."""

    queryset = Repository.objects.none()
    serializer_class = RepositorySerializer
    filterset_class = RepositoryFilter
    ordering_fields = ["created_at", "updated_at"]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    required_scopes = {"create": "admin", "partial_update": "admin", "destroy": "admin"}

    def get_queryset(self):
        return selectors.repositories_for(self.request.user)

    @extend_schema(request=RepositoryCreateSerializer, responses={201: RepositorySerializer})
    def create(self, request):
        data = RepositoryCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        fields = dict(data.validated_data)
        organization = fields["pipeline"].project.organization
        repository = services.repository_create(actor=request.user, **_with_secrets(organization, fields))
        repository = self.get_queryset().get(pk=repository.pk)
        return Response(RepositorySerializer(repository).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RepositoryUpdateSerializer, responses=RepositorySerializer)
    def partial_update(self, request, pk=None):
        data = RepositoryUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        with transaction.atomic():
            repository = self.locked_object()
            organization = repository.pipeline.project.organization
            fields = _with_secrets(organization, dict(data.validated_data))
            repository = services.repository_update(actor=request.user, repository=repository, **fields)
        repository = self.get_queryset().get(pk=repository.pk)
        return self.with_etag(Response(RepositorySerializer(repository).data), repository)

    def destroy(self, request, pk=None):
        with transaction.atomic():
            services.repository_delete(actor=request.user, repository=self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: SyncSerializer})
    @action(detail=True, methods=["post"])
    def sync(self, request, pk=None):
        """Queue a sync on the worker; poll the repository for its result."""
        status_row = services.repository_sync_now(actor=request.user, repository=self.get_object())
        return Response(SyncSerializer(status_row).data, status=status.HTTP_202_ACCEPTED)

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
