"""API for promotion requests: create (with Idempotency-Key), list, detail with the frozen plan,
decisions and gates, and the approve/reject/cancel/retry/override-freeze actions."""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.approvals.filtersets import PromotionFilter
from apps.core import idempotency
from apps.core.actions import actions_schema
from apps.core.api import (
    CursorPagination,
    StrictFilterBackend,
    StrictOrderingFilter,
    StrictSearchFilter,
    StrictSerializer,
)
from apps.core.errors import field_error
from apps.core.models import without_blobs
from apps.core.viewsets import resolve_references
from apps.environments import permissions as perms
from apps.environments.api import environment_reference, environment_shown
from apps.pipelines.models import Pipeline
from apps.pipelines.selectors import get_pipeline_for_user, version_numbered
from apps.runs import selectors as run_selectors
from apps.tenancy.api import organization_shown, user_shown

from .. import selectors, services
from ..models import PROMOTION_FREEZE_OVERRIDE, PROMOTION_PROGRESS, Decision, PromotionRequest

# --- promotion requests -------------------------------------------------------------------------------


class PromotionSerializer(serializers.ModelSerializer):
    """A promotion request as lists show it (no plan)."""

    organization = organization_shown()
    pipeline_slug = serializers.CharField(source="pipeline.slug", read_only=True)
    project = serializers.CharField(source="pipeline.project.slug", read_only=True, help_text="Project slug.")
    version = serializers.IntegerField(source="version.number", read_only=True, help_text="Version number.")
    source = environment_shown()  # type: ignore[assignment]  # a field named "source" (DRF's Field.source is a str)
    target = environment_shown()
    requested_by = user_shown(allow_null=True)
    compare_url = serializers.CharField(read_only=True, help_text="A diff/compare link, or empty.")
    attached_runs = serializers.PrimaryKeyRelatedField(many=True, read_only=True)
    deployment = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)
    freeze_override_requested_by = user_shown(allow_null=True)
    freeze_override_confirmed_by = user_shown(allow_null=True)
    current_approvals = serializers.SerializerMethodField(
        help_text="Approvals given against the current plan (earlier ones no longer count)."
    )

    class Meta:
        model = PromotionRequest
        fields = [
            "id",
            "organization",
            "pipeline",
            "pipeline_slug",
            "project",
            "version",
            "source",
            "target",
            "requested_by",
            "reason",
            "ticket",
            "compare_url",
            "attached_runs",
            "state",
            "current_approvals",
            "plan_hash",
            "plan_frozen_at",
            "created_at",
            "updated_at",
            *PROMOTION_PROGRESS,
            *PROMOTION_FREEZE_OVERRIDE,
            "watch_state",
        ]
        read_only_fields = fields

    def get_current_approvals(self, obj) -> int:
        return sum(1 for d in obj.decisions.all() if d.decision == Decision.APPROVE and d.plan_hash == obj.plan_hash)


class DecisionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    approver = serializers.CharField(source="approver.username")
    decision = serializers.ChoiceField(choices=Decision.choices)
    comment = serializers.CharField()
    plan_hash = serializers.CharField()
    decided_at = serializers.DateTimeField()
    counts = serializers.BooleanField(
        help_text="Given against the current plan hash; earlier decisions no longer count."
    )


class RuleStatusSerializer(serializers.Serializer):
    rule = serializers.CharField()
    rule_id = serializers.IntegerField()
    scope = serializers.CharField(help_text="'organization', or the project's slug.")
    required_approvals = serializers.IntegerField()
    approvals = serializers.IntegerField(help_text="Approvals that count toward this rule.")
    approved_by = serializers.ListField(child=serializers.CharField())
    met = serializers.BooleanField()
    wait_minutes = serializers.IntegerField()


class GateSerializer(serializers.Serializer):
    gate = serializers.ChoiceField(choices=["validation", "data_diff", "git", "refs", "ticket"])
    rule = serializers.CharField()
    passed = serializers.BooleanField()
    detail = serializers.CharField()
    run = serializers.IntegerField(required=False, allow_null=True, help_text="validation: the passing run.")
    finished_at = serializers.CharField(required=False, allow_null=True, help_text="validation: when it finished.")
    baseline_run = serializers.IntegerField(required=False, allow_null=True, help_text="data_diff: the baseline run.")
    data_diff = serializers.JSONField(
        required=False, help_text="data_diff: per destination, the per-column diff (schema changes first)."
    )


class PromotionDetailSerializer(PromotionSerializer):
    """A request with its frozen plan (secrets as references), decisions, rule status and gates, and
    whether the caller may approve it. Needs `rules` and `request` in the context."""

    plan = serializers.SerializerMethodField(
        help_text="Graph diff, the target's configuration before/after (secrets as references), readiness, gates."
    )
    decisions = serializers.SerializerMethodField()
    rule_status = serializers.SerializerMethodField()
    gates = serializers.SerializerMethodField()
    can_approve = serializers.SerializerMethodField(help_text="actions.approve.allowed")
    approval_blockers = serializers.SerializerMethodField(help_text="actions.approve.reasons: why you may not approve.")
    actions = serializers.SerializerMethodField()

    class Meta(PromotionSerializer.Meta):
        fields = [
            *PromotionSerializer.Meta.fields,
            "plan",
            "decisions",
            "rule_status",
            "gates",
            "can_approve",
            "approval_blockers",
            "actions",
        ]
        read_only_fields = fields

    @extend_schema_field({"type": "object", "additionalProperties": True})
    def get_plan(self, obj) -> dict:
        return {} if self.context.get("hide_plan") else obj.plan

    @extend_schema_field(DecisionSerializer(many=True))
    def get_decisions(self, obj) -> list:
        rows = [
            {
                "id": d.pk,
                "approver": d.approver,
                "decision": d.decision,
                "comment": d.comment,
                "plan_hash": d.plan_hash,
                "decided_at": d.decided_at,
                "counts": d.plan_hash == obj.plan_hash,
            }
            for d in obj.decisions.all()
        ]
        return DecisionSerializer(rows, many=True).data  # type: ignore[return-value]  # many=True: a ReturnList (the stubs say ReturnDict)

    @extend_schema_field(RuleStatusSerializer(many=True))
    def get_rule_status(self, obj) -> list:
        return RuleStatusSerializer(services.rule_status(obj, self.context["rules"]), many=True).data  # type: ignore[return-value]  # many=True: a ReturnList (the stubs say ReturnDict)

    @extend_schema_field(GateSerializer(many=True))
    def get_gates(self, obj) -> list:
        if self.context.get("hide_plan"):
            return []
        return GateSerializer((obj.plan or {}).get("gates", []), many=True).data  # type: ignore[return-value]  # many=True: a ReturnList (the stubs say ReturnDict)

    def get_can_approve(self, obj) -> bool:
        return self._actions(obj)["approve"].allowed

    def get_approval_blockers(self, obj) -> list[str]:
        return list(self._actions(obj)["approve"].reasons)

    @actions_schema(*services.PROMOTION_ACTIONS)
    def get_actions(self, obj) -> dict:
        return {name: answer.as_dict() for name, answer in self._actions(obj).items()}

    def _actions(self, obj) -> dict:
        if "_action_answers" not in self.__dict__:
            self.__dict__["_action_answers"] = services.promotion_actions(
                self.context["request"].user, obj, self.context["rules"]
            )
        return self.__dict__["_action_answers"]


class PromotionCreateSerializer(StrictSerializer):
    pipeline = serializers.IntegerField(min_value=1, help_text="Pipeline id.")
    version = serializers.IntegerField(min_value=1, help_text="Version number.")
    source = environment_reference(help_text="Source environment slug.")  # type: ignore[assignment]  # a field named "source" (DRF's Field.source is a str)
    target = environment_reference(required=False, allow_null=True, help_text="Default: where the source promotes to.")
    reason = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)
    ticket = serializers.CharField(max_length=100, required=False, default="", allow_blank=True)
    compare_url = serializers.URLField(
        max_length=1000, required=False, default="", allow_blank=True, help_text="Default: the version's."
    )
    attached_runs = serializers.ListField(
        child=serializers.IntegerField(min_value=1), required=False, default=list, max_length=100, help_text="Run ids."
    )


class ApproveSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=4000, required=False, default="", allow_blank=True)
    plan_hash = serializers.CharField(
        max_length=71,
        required=False,
        default="",
        allow_blank=True,
        help_text="The plan hash you reviewed: if the plan changed since, the approval is refused (409).",
    )


class RejectSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=4000, help_text="Why the request is rejected.")


class CancelSerializer(StrictSerializer):
    comment = serializers.CharField(max_length=400, required=False, default="", allow_blank=True)


class OverrideFreezeSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500, help_text="Why the freeze must be broken (asking or confirming).")


class PromotionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Promotion requests: a version moves along the environment path once the target's rules are
    met. Creating one needs request_promotion on the target; deciding needs approve_promotion (and
    the rules' eligibility: never your own request unless a rule allows). Reading needs view_environment
    on the target."""

    pagination_class = CursorPagination  # large and append-mostly: no COUNT(*)
    queryset = PromotionRequest.objects.none()
    serializer_class = PromotionSerializer
    filterset_class = PromotionFilter
    filter_backends = [StrictFilterBackend, StrictOrderingFilter, StrictSearchFilter]
    search_fields = ["reason", "ticket", "pipeline__slug"]
    ordering_fields = ["created_at", "updated_at", "state"]  # a cursor orders by a column that is never null

    def get_queryset(self):
        promotions = selectors.promotions_for(self.request.user).select_related(
            "freeze_override_requested_by", "freeze_override_confirmed_by"
        )
        return without_blobs(promotions) if self.action == "list" else promotions

    def get_serializer_class(self):
        return PromotionDetailSerializer if self.action == "retrieve" else PromotionSerializer

    def _detail(self, promotion: PromotionRequest, code=status.HTTP_200_OK) -> Response:
        """Render the detail of a request, read fresh (with its decisions) through the selector."""
        fresh = self.get_queryset().filter(pk=promotion.pk).first()
        hide_plan = fresh is None  # a requester who may not view the target does not see its configuration
        promotion = fresh or promotion
        return Response(self._detail_data(promotion, hide_plan=hide_plan), status=code)

    def _detail_data(self, promotion: PromotionRequest, *, hide_plan: bool = False) -> dict:
        rules = services.rules_for(promotion.pipeline, promotion.target)
        # The rule status checks each approver's permissions: read them all at once.
        perms.prefetch([d.approver for d in promotion.decisions.all()])
        context = {"request": self.request, "rules": rules, "hide_plan": hide_plan}
        return PromotionDetailSerializer(promotion, context=context).data

    def _transition(self, serializer_class, service):
        """Validate the body, then let the service move this request (the service decides who may)."""
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        return self._detail(service(actor=self.request.user, request=self.get_object(), **data.validated_data))

    def retrieve(self, request, pk=None):
        return Response(self._detail_data(self.get_object()))

    @extend_schema(
        request=PromotionCreateSerializer,
        parameters=[idempotency.IDEMPOTENCY_KEY_PARAMETER],
        responses={201: PromotionDetailSerializer, 200: PromotionDetailSerializer},
    )
    def create(self, request):
        """Request promotion of a version from `source` into `target` (default: the next stage).
        The plan is frozen now; with an Idempotency-Key, a retried POST returns the same request (200)."""
        key = idempotency.key_from_headers(request)
        data = PromotionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        pipeline = get_pipeline_for_user(request.user, data.validated_data["pipeline"], field="pipeline")
        version = version_numbered(pipeline, data.validated_data["version"])
        organization = pipeline.project.organization_id
        fields = resolve_references(data, dict(data.validated_data), lambda: organization, request.user)
        promotion, created = services.promotion_request_create(
            actor=request.user,
            pipeline=pipeline,
            version=version,
            source=fields["source"],
            target=fields.get("target"),
            reason=fields["reason"],
            ticket=fields["ticket"],
            compare_url=fields["compare_url"],
            attached_runs=_runs(request.user, pipeline, fields["attached_runs"]),
            idempotency_key=key,
        )
        return self._detail(promotion, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=ApproveSerializer, responses=PromotionDetailSerializer)
    @action(detail=True, methods=["post"])
    def approve(self, request, pk=None):
        """Approve against the current plan (give `plan_hash` to be sure it is the one you reviewed).
        When every rule is met the request is approved and deployed by a worker."""
        return self._transition(ApproveSerializer, services.promotion_approve)

    @extend_schema(request=RejectSerializer, responses=PromotionDetailSerializer)
    @action(detail=True, methods=["post"])
    def reject(self, request, pk=None):
        """Reject a pending request (a comment is required)."""
        return self._transition(RejectSerializer, services.promotion_reject)

    @extend_schema(request=CancelSerializer, responses=PromotionDetailSerializer)
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        """The requester, or someone who manages the target, withdraws a pending or approved request."""
        return self._transition(CancelSerializer, services.promotion_cancel)

    @extend_schema(request=None, responses=PromotionDetailSerializer)
    @action(detail=True, methods=["post"])
    def retry(self, request, pk=None):
        """Try a failed deployment again (the worker re-checks everything)."""
        promotion = services.promotion_retry(actor=request.user, request=self.get_object())
        return self._detail(promotion)

    @extend_schema(request=OverrideFreezeSerializer, responses=PromotionDetailSerializer)
    @action(detail=True, methods=["post"], url_path="override-freeze")
    def override_freeze(self, request, pk=None):
        """Break-glass: someone who manages the target asks to deploy inside a freeze window, with a
        reason; a second such person confirms the same way. Audited and notified."""
        return self._transition(OverrideFreezeSerializer, services.promotion_override_freeze)


def _runs(user, pipeline: Pipeline, ids: list[int]) -> list:
    ids = list(dict.fromkeys(ids))
    runs = {r.pk: r for r in run_selectors.runs_for(user).filter(pk__in=ids, pipeline=pipeline)}
    missing = [pk for pk in ids if pk not in runs]
    if missing:
        raise field_error("attached_runs", f"No run #{missing[0]} of this pipeline.")
    return [runs[pk] for pk in ids]
