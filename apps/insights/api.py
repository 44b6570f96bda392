"""`/api/v1/insights/`: delivery (DORA) metrics per pipeline and environment."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, viewsets
from rest_framework.response import Response

from apps.environments.models import Environment
from apps.pipelines.models import Pipeline

from .delivery import DEFAULT_DAYS, MAX_DAYS, delivery_insights


class InsightsQuerySerializer(serializers.Serializer):
    pipeline = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    environment = serializers.SlugField(max_length=50, required=False, help_text="Environment slug.")
    days = serializers.IntegerField(min_value=7, max_value=MAX_DAYS, default=DEFAULT_DAYS)

    def to_internal_value(self, data):
        unknown = sorted(name for name in data if name not in self.fields and name != "format")
        if unknown:
            raise serializers.ValidationError({name: ["Unknown parameter."] for name in unknown})
        return super().to_internal_value({name: data.get(name) for name in data if name in self.fields})

    def validate(self, attrs):
        user = self.context["request"].user
        if "pipeline" in attrs:
            attrs["pipeline"] = (
                Pipeline.objects.restrict(user).filter(pk=attrs["pipeline"]).select_related("project").first()
            )
            if attrs["pipeline"] is None:
                raise serializers.ValidationError({"pipeline": ["No such pipeline."]})
        if "environment" in attrs:
            visible = Environment.objects.restrict(user)
            if attrs.get("pipeline") is not None:
                visible = visible.filter(organization_id=attrs["pipeline"].project.organization_id)
            found = list(visible.filter(slug=attrs["environment"])[:2])
            if len(found) != 1:
                message = "No such environment." if not found else "Several organizations have it: give `pipeline`."
                raise serializers.ValidationError({"environment": [message]})
            attrs["environment"] = found[0]
        return attrs


class WeekSerializer(serializers.Serializer):
    week = serializers.DateField(help_text="Monday of the week.")
    deployments = serializers.IntegerField()
    failures = serializers.IntegerField()


class DeliveryInsightsSerializer(serializers.Serializer):
    pipeline = serializers.IntegerField()
    pipeline_name = serializers.CharField()
    environment = serializers.CharField()
    days = serializers.IntegerField()
    deployments = serializers.IntegerField()
    deployments_per_week = serializers.FloatField()
    lead_time_seconds = serializers.FloatField(allow_null=True, help_text="Median, version created → deployed.")
    change_failure_rate = serializers.FloatField(allow_null=True, help_text="Failed deployments / deployments.")
    failed_deployments = serializers.IntegerField()
    time_to_restore_seconds = serializers.FloatField(allow_null=True, help_text="Median, failure → next deployment.")
    weekly = WeekSerializer(many=True)


class InsightsViewSet(viewsets.GenericViewSet):
    """Delivery metrics (DORA) per pipeline and environment over the last `days` days: deployment
    frequency, lead time, change failure rate and time to restore; only what the caller may see."""

    serializer_class = DeliveryInsightsSerializer
    pagination_class = None
    filter_backends = []

    @extend_schema(
        parameters=[
            OpenApiParameter("pipeline", OpenApiTypes.INT),
            OpenApiParameter("environment", OpenApiTypes.STR, description="Environment slug."),
            OpenApiParameter("days", OpenApiTypes.INT, description=f"7 to {MAX_DAYS} (default {DEFAULT_DAYS})."),
        ],
        responses=DeliveryInsightsSerializer(many=True),
    )
    def list(self, request):
        query = InsightsQuerySerializer(data=request.query_params, context=self.get_serializer_context())
        query.is_valid(raise_exception=True)
        rows = delivery_insights(request.user, **query.validated_data)
        return Response(DeliveryInsightsSerializer([row.as_dict() for row in rows], many=True).data)
