"""Reads for promotions and rules, filtered by the permission door."""

from django.db.models import Prefetch, Q, QuerySet

from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.runs.models import Run

from .models import ApprovalDecision, ApprovalRule, PromotionRequest, PromotionState


def promotions_for(user) -> QuerySet:
    """Requests into environments the user may view (and their own), with what lists and details need."""
    visible = perms.environments_where(user, perms.VIEW, Environment.objects.all())
    requestable = perms.environments_where(user, perms.REQUEST_PROMOTION, Environment.objects.all())
    return (
        # A requester always sees their own requests, even into a stage they may not otherwise view.
        PromotionRequest.objects.filter(Q(target__in=visible) | Q(requested_by=user, target__in=requestable))
        .select_related(
            "pipeline__project", "version__author", "source", "target", "requested_by", "deployment", "organization"
        )
        .prefetch_related(
            Prefetch("decisions", queryset=ApprovalDecision.objects.select_related("approver")),
            Prefetch("attached_runs", queryset=Run.objects.only("id")),  # ids only: runs carry blobs
        )
    )


def awaiting(user, queryset: QuerySet | None = None) -> QuerySet:
    """Pending requests into environments where the user may approve, not their own and not yet
    decided by them against the current plan (eligibility per rule is refined by the service)."""
    queryset = promotions_for(user) if queryset is None else queryset
    approvable = perms.environments_where(user, perms.APPROVE_PROMOTION, Environment.objects.all())
    decided = ApprovalDecision.objects.filter(approver=user).values_list("request_id", "plan_hash")
    pairs = dict(decided)
    candidates = queryset.filter(state=PromotionState.PENDING, target__in=approvable).exclude(requested_by=user)
    stale_or_new = [pk for pk, plan in candidates.values_list("pk", "plan_hash") if pairs.get(pk) != plan]
    return queryset.filter(pk__in=stale_or_new)


def rules_for_user(user) -> QuerySet:
    visible = perms.environments_where(user, perms.VIEW, Environment.objects.all())
    return (
        ApprovalRule.objects.filter(environment__in=visible)
        .select_related("environment", "project", "approver_group", "organization")
        .prefetch_related("approver_users", "extra_sources")
    )
