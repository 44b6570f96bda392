"""Promotion tasks: thin and idempotent; the PromotionRequest row is the source of truth."""

from celery import shared_task

from apps.core.log_context import log_context

from . import services


@shared_task(
    name="apps.approvals.tasks.execute_promotion", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def execute_promotion(request_pk: int) -> None:
    """Deploy an approved request (a duplicate message finds it deploying or deployed and does nothing)."""
    with log_context(promotion_id=request_pk):
        services.promotion_execute(request_pk)


@shared_task(name="apps.approvals.tasks.sweep_promotions", ignore_result=True)
def sweep_promotions() -> dict:
    """Beat: expire stale requests, re-queue approved or orphaned deploying ones, re-plan on change."""
    result = services.promotions_sweep()
    result["replanned"] = services.promotions_replan()
    return result


@shared_task(name="apps.approvals.tasks.remind_approvers", ignore_result=True)
def remind_approvers() -> int:
    """Beat: remind approvers of requests still pending."""
    return services.promotions_remind()


@shared_task(name="apps.approvals.tasks.watch_deployments", ignore_result=True)
def watch_deployments() -> dict:
    """Beat: watch the first runs after a deploy; roll back automatically where the policy says so."""
    return services.promotions_watch()
