"""The deploying worker (approved → deploying → deployed, at most once) and the beat jobs: the outbox
sweep, expiry, re-planning, reminders, watching the first runs after a deploy (automatic rollback),
and approvals' part of a rollback (the request goes to rolled_back)."""

from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from apps.core.services import audited_save
from apps.environments.services import active_freeze
from apps.notifications.models import Event
from apps.runs import services as run_services
from apps.runs.models import Run, RunStatus

from ..models import Decision, PromotionRequest, WatchState
from . import base
from .actions import _approvers_to_notify, rule_status
from .base import S, _emit, _locked, logger, transition
from .plan import evaluate_gates, refresh_plan
from .rules import rules_for

# --- deploying (the worker) ------------------------------------------------------------------------------------


def _blocked(request: PromotionRequest, reason: str) -> None:
    if request.blocked_reason != reason:
        request.blocked_reason = reason[:500]
        audited_save(request, actor=None, reason=f"waiting: {reason}"[:500], clean=False)


def _fail(request: PromotionRequest, reason: str) -> None:
    transition(request, "fail", reason=reason)
    audited_save(request, actor=None, reason=f"failed: {reason}"[:500], clean=False)
    _emit(request, Event.PROMOTION_FAILED, users=[request.requested_by] if request.requested_by else [], reason=reason)


def _prepare(request_pk: int, now) -> PromotionRequest | None:
    """Step 1 (its own transaction): re-check everything and move approved → deploying, or take over
    a deploying request whose worker died (lease run out). None when there is nothing to do."""
    with transaction.atomic():
        try:
            request = _locked(PromotionRequest(pk=request_pk))
        except PromotionRequest.DoesNotExist:
            return None
        if request.state == S.DEPLOYING:
            if request.lease_expires_at and request.lease_expires_at > now:
                return None  # another worker is on it
            return _start_attempt(request, now)
        if request.state != S.APPROVED or (request.deploy_after and request.deploy_after > now):
            return None
        window = active_freeze(request.target, now)
        if window is not None and not request.freeze_override_confirmed_by_id:
            _blocked(request, f"freeze window in '{request.target.slug}': {window.reason}")
            return None
        deployed = run_services.active_deployment(request.pipeline, request.target)
        if refresh_plan(request, deployed=deployed):
            return None  # back to pending: approvers look again
        problems = request.plan["readiness"]["problems"]
        if problems:
            _fail(request, "target not ready: " + "; ".join(p["message"] for p in problems))
            return None
        rules = rules_for(request.pipeline, request.target)
        failed = [g for g in evaluate_gates(request, rules, at=request.created_at) if not g["passed"]]
        if failed:
            _fail(request, "gate failed: " + "; ".join(f"{g['rule']}: {g['detail']}" for g in failed))
            return None
        if rules and not all(s["met"] for s in rule_status(request, rules)):
            transition(request, "reopen")
            audited_save(request, actor=None, reason="approvals no longer meet the rules", clean=False)
            return None
        if deployed is not None and deployed.version.number >= request.version.number:
            _fail(request, f"v{deployed.version.number} is already deployed in '{request.target.slug}'.")
            return None
        try:
            with transaction.atomic():
                return _start_attempt(request, now)
        except IntegrityError:
            # _start_attempt changed the instance before its save failed: read the row again (still
            # approved; the lock is held), or saving the blocked reason would write `deploying` again.
            request = _locked(request)
            _blocked(request, "another promotion of this pipeline into this environment is deploying")
            return None


def _start_attempt(request: PromotionRequest, now) -> PromotionRequest:
    transition(request, "start_deploying", lease_until=now + timedelta(seconds=settings.PROMOTION_LEASE_SECONDS))
    audited_save(request, actor=None, reason=f"deploying (attempt {request.attempts})", clean=False)
    return request


def _finish(prepared: PromotionRequest) -> PromotionRequest | None:
    """Step 2 (its own transaction): create the Deployment and mark deployed, together (so a
    deployment of this request exists exactly when its state says deployed). A second worker, or a
    retry after a crash, finds the state or the attempt changed and does nothing twice."""
    with transaction.atomic():
        request = _locked(prepared)
        if request.state != S.DEPLOYING or request.attempts != prepared.attempts:
            return None
        PromotionRequest.plan.share(prepared, request)  # the stored plan step 1 read, not read again
        deployment = run_services.deploy(
            actor=request.requested_by,
            pipeline=request.pipeline,
            environment=request.target,
            version=request.version,
            promotion_request_id=request.pk,
            note=f"promotion #{request.pk}",
            resolved=request.plan["config_after"],  # re-frozen by step 1: what is deployed now
        )
        policy = getattr(request.target, "policy", None)
        watch = policy is not None and bool(policy.watch_first_runs)
        transition(request, "finish_deploying", deployment=deployment, now=timezone.now(), watch=watch)
        audited_save(request, actor=None, reason="deployed", clean=False)
        approvers = [d.approver for d in request.decisions.select_related("approver") if d.decision == Decision.APPROVE]
        users = [u for u in [request.requested_by, *approvers] if u]
        _emit(request, Event.PROMOTION_DEPLOYED, users=users, deployment=deployment.pk)
    return request


def promotion_execute(request_pk: int) -> PromotionRequest | None:
    """Deploy an approved request (the worker's job; safe to run any number of times at once)."""
    now = timezone.now()
    request = _prepare(request_pk, now)
    if request is None:
        return None
    try:
        return _finish(request)
    except Exception as exc:
        logger.exception("promotion %s failed to deploy", request_pk)
        message = exc.message if hasattr(exc, "message") else type(exc).__name__
        with transaction.atomic():
            request = _locked(request)
            if request.state == S.DEPLOYING:
                _fail(request, f"deployment failed: {message}")
        return request


# --- beat: sweep, expiry, reminders, watching ----------------------------------------------------------------


def promotions_sweep(now=None) -> dict:
    """The outbox sweep: expire stale pending requests, re-queue approved ones that are due but were
    not deployed (broker down, lost task) and deploying ones whose worker died."""
    now = now or timezone.now()
    expired = 0
    for pk in PromotionRequest.objects.filter(state=S.PENDING, expires_at__lte=now).values_list("pk", flat=True)[:200]:
        with transaction.atomic():
            request = _locked(PromotionRequest(pk=pk))
            if request.state == S.PENDING and request.expires_at and request.expires_at <= now:
                transition(request, "expire", now=now)
                audited_save(request, actor=None, reason="expired", clean=False)
                _emit(request, Event.PROMOTION_EXPIRED, users=[request.requested_by] if request.requested_by else [])
                expired += 1
    grace = now - timedelta(seconds=settings.PROMOTION_DISPATCH_GRACE_SECONDS)
    due = list(
        PromotionRequest.objects.filter(
            Q(state=S.APPROVED, deploy_after__lte=grace) | Q(state=S.DEPLOYING, lease_expires_at__lte=now)
        ).values_list("pk", flat=True)[:200]
    )
    from ..tasks import execute_promotion

    for pk in due:
        base._enqueue(execute_promotion, [pk])
    return {"expired": expired, "requeued": len(due)}


def promotions_replan(now=None) -> int:
    """Re-freeze the plans of open requests whose version or target configuration changed, so
    approvers hear about it now rather than when they open the request."""
    changed = 0
    for pk in PromotionRequest.objects.filter(state__in=(S.PENDING, S.APPROVED)).values_list("pk", flat=True)[:200]:
        with transaction.atomic():
            request = _locked(PromotionRequest(pk=pk))
            if request.state in (S.PENDING, S.APPROVED) and refresh_plan(request):
                changed += 1
    return changed


def promotions_remind(now=None) -> int:
    """Remind eligible approvers who have not decided of requests pending longer than the interval."""
    now = now or timezone.now()
    cutoff = now - timedelta(hours=settings.PROMOTION_REMIND_AFTER_HOURS)
    reminded = 0
    stale = PromotionRequest.objects.filter(state=S.PENDING, created_at__lte=cutoff).filter(
        Q(last_reminded_at__isnull=True) | Q(last_reminded_at__lte=cutoff)
    )
    for pk in stale.values_list("pk", flat=True)[:200]:
        with transaction.atomic():
            request = _locked(PromotionRequest(pk=pk))
            if request.state != S.PENDING:
                continue
            decided = set(request.decisions.filter(plan_hash=request.plan_hash).values_list("approver_id", flat=True))
            rules = rules_for(request.pipeline, request.target)
            users = [u for u in _approvers_to_notify(request, rules) if u.pk not in decided]
            request.last_reminded_at = now
            request.skip_history_when_saving = True  # bookkeeping: no history row for an excluded field
            request.save(update_fields=["last_reminded_at"])
            if users:
                _emit(request, Event.APPROVAL_REMINDER, users=users, reason="pending")
                reminded += 1
    return reminded


def promotions_watch(now=None) -> dict:
    """Watch the first N runs after a deploy (policy `watch_first_runs`): a failure rolls back when
    the policy says `auto_rollback_on_failure`; N successes end the watch."""
    result = {"passed": 0, "rolled_back": 0}
    for pk in PromotionRequest.objects.filter(state=S.DEPLOYED, watch_state=WatchState.WATCHING).values_list(
        "pk", flat=True
    )[:200]:
        try:
            _watch_one(pk, result)
        except Exception:  # one bad request must not leave the others unwatched
            logger.exception("watching promotion %s failed", pk)
    return result


def _watch_one(pk: int, result: dict) -> None:
    """One watched deployment: roll back, end the watch, or keep watching."""
    with transaction.atomic():
        request = _locked(PromotionRequest(pk=pk))
        policy = request.target.policy
        if request.state != S.DEPLOYED or request.watch_state != WatchState.WATCHING or request.deployment is None:
            return
        watched = list(
            Run.objects.filter(
                deployment=request.deployment, status__in=(RunStatus.SUCCEEDED, RunStatus.FAILED)
            ).order_by("created_at", "id")[: policy.watch_first_runs]
        )
        failed = [r for r in watched if r.status == RunStatus.FAILED]
        rollbackable = request.deployment.is_active and request.deployment.previous_id is not None
        # The first deployment into a stage has nothing to roll back to: end the watch (below)
        # rather than raise on every beat tick and leave the requests after this one unwatched.
        if failed and policy.auto_rollback_on_failure and rollbackable:
            run_services.deployment_rollback(
                actor=None,
                deployment=request.deployment,
                reason=f"automatic: run #{failed[0].pk} failed within the first {policy.watch_first_runs} runs",
            )
            result["rolled_back"] += 1
        elif failed or len(watched) >= policy.watch_first_runs:
            request.watch_state = WatchState.PASSED if not failed else WatchState.NONE
            audited_save(request, actor=None, reason="watch ended", clean=False)
            result["passed"] += int(not failed)


def promotion_rolled_back(*, actor, deployment, runs, note: str, reason: str) -> None:
    """Runs' rollback hook (inside its transaction): the promotion that made `deployment` goes from
    deployed to rolled_back, and its requester hears which runs the rolled-back version wrote."""
    if not deployment.promotion_request_id:
        return
    request = (
        PromotionRequest.objects.select_for_update(of=("self",)).filter(pk=deployment.promotion_request_id).first()
    )
    if request is not None and request.state == S.DEPLOYED:
        transition(request, "roll_back")
        audited_save(request, actor=actor, reason=note, clean=False)
        _emit(
            request,
            Event.PROMOTION_FAILED,
            users=[request.requested_by] if request.requested_by else [],
            reason=f"rolled back: {reason or note}",
            rolled_back_runs=[r.pk for r in runs],
        )
