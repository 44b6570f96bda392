"""API for deployment rollback, registered on the deployments prefix (runs sits below approvals and
owns the rollback service)."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import StrictSerializer
from apps.runs import selectors as run_selectors
from apps.runs import services as run_services
from apps.runs.api import DeploymentSerializer, RunSerializer
from apps.runs.models import Deployment

# --- rollback (registered on the deployments prefix: runs sits below approvals) ------------------------


class RollbackSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=400, required=False, default="", allow_blank=True)


RollbackResponse = inline_serializer(
    "DeploymentRollback",
    {
        "deployment": DeploymentSerializer(help_text="The new deployment (the previous version, deployed again)."),
        "runs": RunSerializer(many=True, help_text="Runs written by the rolled-back version (and their tables)."),
    },
)


class DeploymentRollbackViewSet(viewsets.GenericViewSet):
    """Rollback of an active deployment: the previous version is deployed again as a new deployment
    (history is never rewritten). Needs manage_environment."""

    queryset = Deployment.objects.none()
    serializer_class = DeploymentSerializer
    filter_backends = []

    def get_queryset(self):
        return Deployment.objects.restrict(self.request.user).select_related(
            "pipeline__project", "environment", "version", "deployed_by", "previous__version"
        )

    @extend_schema(request=RollbackSerializer, responses=RollbackResponse)
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        """Redeploy the version before this one and list the runs the rolled-back version wrote."""
        data = RollbackSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        deployment, runs = run_services.deployment_rollback(
            actor=request.user, deployment=self.get_object(), reason=data.validated_data["reason"]
        )
        deployment = self.get_queryset().get(pk=deployment.pk)
        runs = run_selectors.runs_for(request.user).filter(pk__in=[r.pk for r in runs]).order_by("created_at", "id")
        return Response(
            {
                "deployment": DeploymentSerializer(deployment, context=self.get_serializer_context()).data,
                "runs": RunSerializer(runs, many=True).data,
            }
        )
