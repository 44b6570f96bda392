"""Reads for promotions and rules, filtered by the permission door."""

from django.db.models import Prefetch, QuerySet

from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.runs.models import Run

from .models import ApprovalDecision, ApprovalRule, PromotionRequest, PromotionState


def promotions_for(user) -> QuerySet:
    """Requests into environments the user may view (and their own), with what lists and details need."""
    return (
        # A requester always sees their own requests, even into a stage they may not otherwise view.
        PromotionRequest.objects.restrict(user)
        .select_related(
            "pipeline__project", "version__author", "source", "target", "requested_by", "deployment", "organization"
        )
        .prefetch_related(
            Prefetch("decisions", queryset=ApprovalDecision.objects.select_related("approver")),
            Prefetch("attached_runs", queryset=Run.objects.only("id")),  # ids only: runs carry blobs
        )
    )


def awaiting(user, queryset: QuerySet | None = None) -> QuerySet:
    """The requests (of `queryset`, default those the user sees) where promotion_actions allows the
    user to approve: pending, eligible under every rule's terms, not yet decided by them on the
    current plan. A constant number of queries, whatever the number of requests."""
    from . import services

    queryset = promotions_for(user) if queryset is None else queryset
    approvable = Environment.objects.restrict(user, perms.APPROVE_PROMOTION)
    candidates = list(
        queryset.filter(state=PromotionState.PENDING, target__in=approvable)
        .select_related("pipeline", "version", "target")
        .prefetch_related(None)
        .prefetch_related(Prefetch("decisions", queryset=ApprovalDecision.objects.filter(approver=user)))
    )
    rules = services.rules_for_requests(candidates) if candidates else {}
    grouped = any(rule.approver_group_id for applicable in rules.values() for rule in applicable)
    group_ids = set(user.groups.values_list("pk", flat=True)) if grouped else set()
    allowed = [
        request.pk
        for request in candidates
        if services.promotion_actions(user, request, rules[request.pk], group_ids=group_ids)["approve"].allowed
    ]
    return queryset.filter(pk__in=allowed)


def rules_for_user(user) -> QuerySet:
    return (
        ApprovalRule.objects.restrict(user)
        .select_related("environment", "project", "approver_group", "organization")
        .prefetch_related("approver_users", "extra_sources")
    )
