"""Promotion requests and decisions: creating a request (path, edition, idempotency), approving,
rejecting, cancelling, retrying, the freeze-window break-glass, and queueing the deployment."""

from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core import idempotency
from apps.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed, field_error
from apps.core.services import audited_save, validate
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.notifications.models import Event
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.runs import services as run_services
from apps.runs.models import Deployment, Run, RunStatus
from apps.tenancy.models import Edition

from ..models import OPEN_STATES, ApprovalDecision, Decision, PromotionRequest
from . import base
from .actions import _approvers_to_notify, _refuse_state, promotion_actions, rule_status
from .base import MAX_TEXT, S, _emit, _locked, transition
from .plan import build_plan, evaluate_gates, refresh_plan
from .rules import rules_for

# --- creating a request -------------------------------------------------------------------------------------


def _source_has(version: PipelineVersion, source: Environment) -> bool:
    """Has the source environment deployed this version, or run it successfully (validated)?"""
    deployed = Deployment.objects.filter(
        pipeline_id=version.pipeline_id, environment=source, is_active=True, version=version
    ).exists()
    return deployed or Run.objects.filter(version=version, environment=source, status=RunStatus.SUCCEEDED).exists()


def _check_not_older(version: PipelineVersion, target: Environment) -> None:
    deployed = run_services.active_deployment(version.pipeline, target)
    if deployed is None:
        return
    if deployed.version.number == version.number:
        raise field_error("version", f"v{version.number} is already deployed in '{target.slug}'.")
    if deployed.version.number > version.number:
        raise field_error(
            "version",
            f"v{deployed.version.number} is deployed in '{target.slug}'; deploying the older v{version.number} "
            "would be a rollback (use the deployment's rollback).",
        )


def promotion_request_create(
    *,
    actor,
    pipeline: Pipeline,
    version: PipelineVersion,
    source: Environment,
    target: Environment | None = None,
    reason: str = "",
    ticket: str = "",
    compare_url: str = "",
    attached_runs=(),
    idempotency_key: str = "",
) -> tuple[PromotionRequest, bool]:
    """Request promotion of a version from `source` into `target` (default: `source.promotes_to`).
    Returns (request, created); a retried call with the same Idempotency-Key returns the first request."""
    body = idempotency.fingerprint(
        pipeline=pipeline.pk,
        version=version.pk,
        source=source.pk,
        target=target.pk if target else None,
        reason=reason,
        ticket=ticket,
        compare_url=compare_url,
        runs=sorted(r.pk for r in attached_runs),
    )

    def create() -> PromotionRequest:
        try:
            with transaction.atomic():
                return _create(
                    actor=actor,
                    pipeline=pipeline,
                    version=version,
                    source=source,
                    target=target,
                    reason=reason,
                    ticket=ticket,
                    compare_url=compare_url,
                    attached_runs=list(attached_runs),
                    idempotency_key=idempotency_key,
                    fingerprint=body if idempotency_key else "",
                )
        except IntegrityError:
            raise Conflict(
                f"An open request already promotes v{version.number} of '{pipeline.slug}' into that environment.",
                code="duplicate_request",
            ) from None

    return idempotency.create_once(
        queryset=PromotionRequest.objects.filter(requested_by=actor),
        key=idempotency_key,
        body_fingerprint=body,
        create=create,
        what="promotion request",
    )


def _create(
    *,
    actor,
    pipeline,
    version,
    source,
    target,
    reason,
    ticket,
    compare_url,
    attached_runs,
    idempotency_key,
    fingerprint,
) -> PromotionRequest:
    organization_id = pipeline.project.organization_id
    if pipeline.project.organization.edition != Edition.ENTERPRISE:
        raise PermissionDenied(
            f"Promotions need the enterprise edition; organization '{pipeline.project.organization.slug}' is on "
            f"the '{pipeline.project.organization.edition}' edition, which has one implicit environment.",
            code="edition_required",
        )
    if len(reason or "") > MAX_TEXT:  # a TextField's max_length is not checked by full_clean
        raise field_error("reason", f"At most {MAX_TEXT} characters.")
    if version.pipeline_id != pipeline.pk:
        raise field_error("version", "The version belongs to another pipeline.")
    if source.organization_id != organization_id:
        raise field_error("source", "No such environment in this pipeline's organization.")
    perms.require(actor, perms.VIEW, source)
    if target is None:
        target = source.promotes_to
        if target is None:
            raise field_error("target", f"'{source.slug}' promotes to no environment; name the target.")
    if target.organization_id != organization_id:
        raise field_error("target", "No such environment in this pipeline's organization.")
    perms.require(actor, perms.REQUEST_PROMOTION, target)
    rules = rules_for(pipeline, target)
    if target.pk != source.promotes_to_id and not any(source in rule.extra_sources.all() for rule in rules):
        expected = source.promotes_to.slug if source.promotes_to_id else "nowhere"
        raise field_error(
            "target",
            f"Promotions follow the environment path: '{source.slug}' promotes to '{expected}', not '{target.slug}'.",
        )
    if not _source_has(version, source):
        raise field_error(
            "version",
            f"v{version.number} is neither deployed nor validated in '{source.slug}'; promote what ran there.",
        )
    _check_not_older(version, target)
    for run in attached_runs:
        if run.pipeline_id != pipeline.pk:
            raise field_error("attached_runs", f"Run #{run.pk} belongs to another pipeline.")
        if not perms.may(actor, perms.VIEW, run.environment):
            raise field_error("attached_runs", f"No such run #{run.pk}.")
    if PromotionRequest.objects.filter(
        pipeline=pipeline, target=target, version=version, state__in=OPEN_STATES
    ).exists():
        raise Conflict(
            f"An open request already promotes v{version.number} of '{pipeline.slug}' into '{target.slug}'.",
            code="duplicate_request",
        )
    request = PromotionRequest(
        organization_id=organization_id,
        pipeline=pipeline,
        version=version,
        source=source,
        target=target,
        requested_by=actor,
        reason=reason,
        ticket=ticket,
        compare_url=compare_url or version.compare_url,
        idempotency_key=idempotency_key,
        idempotency_fingerprint=fingerprint,
    )
    gates = evaluate_gates(request, rules)
    failed = [g for g in gates if not g["passed"]]
    if failed:
        field = {"ticket": "ticket", "validation": "version", "git": "version", "refs": "version"}
        fields: dict[str, list[str]] = {}
        for gate in failed:
            fields.setdefault(field[gate["gate"]], []).append(f"Rule '{gate['rule']}' needs {gate['detail']}.")
        first_field, messages = next(iter(fields.items()))
        raise ValidationFailed(f"{first_field}: {messages[0]}", fields=fields)
    plan, plan_hash = build_plan(pipeline, version, target)
    plan["gates"] = gates
    now = timezone.now()
    request.plan, request.plan_hash, request.plan_frozen_at = plan, plan_hash, now
    expiry = [r.expires_after_hours for r in rules if r.expires_after_hours]
    request.expires_at = now + timedelta(hours=min(expiry)) if expiry else None
    # `state` is protected (only transitions set it) and clean_fields would assign it back.
    validate(request, exclude=["plan", "idempotency_fingerprint", "state"])
    audited_save(request, actor=actor, reason="requested", clean=False)
    request.attached_runs.set(attached_runs)
    _emit(request, Event.PROMOTION_REQUESTED, users=_approvers_to_notify(request, rules), reason=reason)
    if all(status["met"] for status in rule_status(request, rules)):  # no approvals needed: approved at once
        _mark_approved(request, rules, actor=actor)
    return request


# --- decisions ---------------------------------------------------------------------------------------------------


def promotion_approve(*, actor, request: PromotionRequest, comment: str = "", plan_hash: str = "") -> PromotionRequest:
    """Record an approval against the current plan; when every rule is met the request is approved
    and its deployment queued (after the rules' wait)."""
    with transaction.atomic():  # the re-frozen plan is committed even though this approval is refused
        request = _locked(request)
        perms.require(actor, perms.VIEW, request.target)
        _refuse_state(request, "approve")
        changed = refresh_plan(request, actor=actor)
    if changed:
        raise Conflict(
            "The plan changed since it was shown (version or target configuration); review it again.",
            code="plan_changed",
        )
    with transaction.atomic():
        request = _locked(request)
        _refuse_state(request, "approve")
        if plan_hash and plan_hash != request.plan_hash:
            raise Conflict(
                "The plan changed since it was shown (version or target configuration); review it again.",
                code="plan_changed",
            )
        rules = rules_for(request.pipeline, request.target)
        promotion_actions(actor, request, rules)["approve"].enforce()
        _decide(request, actor, Decision.APPROVE, comment)
        if all(s["met"] for s in rule_status(request, rules)):  # no rules left: this approval suffices
            _mark_approved(request, rules, actor=actor)
    return request


def promotion_reject(*, actor, request: PromotionRequest, comment: str) -> PromotionRequest:
    """A person eligible to decide it under the target's rules (as for approving) rejects a pending
    request (a comment is required)."""
    if not (comment or "").strip():
        raise field_error("comment", "Say why the request is rejected.")
    with transaction.atomic():
        request = _locked(request)
        perms.require(actor, perms.VIEW, request.target)
        promotion_actions(actor, request)["reject"].enforce()
        _decide(request, actor, Decision.REJECT, comment)
        transition(request, "reject", now=timezone.now())
        audited_save(request, actor=actor, reason=f"rejected: {comment}", clean=False)
        _emit(
            request,
            Event.PROMOTION_REJECTED,
            users=[request.requested_by] if request.requested_by else [],
            comment=comment,
        )
    return request


def _decide(request: PromotionRequest, actor, decision: str, comment: str) -> ApprovalDecision:
    if len(comment or "") > MAX_TEXT:  # a TextField's max_length is not checked by full_clean
        raise field_error("comment", f"At most {MAX_TEXT} characters.")
    # Deciding twice on one plan was refused by promotion_actions; a decision on an earlier plan is replaced.
    existing = ApprovalDecision.objects.filter(request=request, approver=actor).first()
    row = existing or ApprovalDecision(request=request, approver=actor)
    row.decision, row.comment, row.plan_hash, row.decided_at = decision, comment, request.plan_hash, timezone.now()
    audited_save(row, actor=actor, reason=f"{decision}d", clean=False)
    return row


def _mark_approved(request: PromotionRequest, rules, *, actor) -> None:
    wait = max([r.wait_minutes for r in rules], default=0)
    transition(request, "approve", now=timezone.now(), wait_minutes=wait)
    audited_save(request, actor=actor, reason="approved: every rule is met", clean=False)
    _emit(request, Event.PROMOTION_APPROVED, users=[request.requested_by] if request.requested_by else [])
    _queue_execution(request, countdown=wait * 60)


def _queue_execution(request: PromotionRequest, countdown: float = 0) -> None:
    from ..tasks import execute_promotion

    pk = request.pk
    transaction.on_commit(lambda: base._enqueue(execute_promotion, [pk], countdown=countdown or None), robust=True)


def _require_visible(actor, request: PromotionRequest) -> None:
    """The requester (who may request into the target) or anyone who may view the target."""
    if actor.pk == request.requested_by_id and perms.may(actor, perms.REQUEST_PROMOTION, request.target):
        return
    perms.require(actor, perms.VIEW, request.target)


def promotion_cancel(*, actor, request: PromotionRequest, comment: str = "") -> PromotionRequest:
    """The requester, or someone who manages the target, withdraws a pending or approved request."""
    with transaction.atomic():
        request = _locked(request)
        _require_visible(actor, request)
        promotion_actions(actor, request)["cancel"].enforce()
        transition(request, "cancel", now=timezone.now())
        audited_save(request, actor=actor, reason=f"cancelled{': ' + comment if comment else ''}", clean=False)
    return request


def promotion_retry(*, actor, request: PromotionRequest) -> PromotionRequest:
    """Try a failed deployment again (the deploying step re-checks everything)."""
    with transaction.atomic():
        request = _locked(request)
        _require_visible(actor, request)
        promotion_actions(actor, request)["retry"].enforce()
        newer = (
            PromotionRequest.objects.filter(
                pipeline=request.pipeline, target=request.target, version=request.version, state__in=OPEN_STATES
            )
            .exclude(pk=request.pk)
            .first()
        )
        if newer is not None:
            raise Conflict(
                f"Request #{newer.pk} already promotes v{request.version.number} into '{request.target.slug}' "
                f"({newer.state}); follow that one instead.",
                code="duplicate_request",
            )
        transition(request, "retry", now=timezone.now())
        audited_save(request, actor=actor, reason="retry", clean=False)
        _queue_execution(request)
    return request


def promotion_override_freeze(*, actor, request: PromotionRequest, reason: str) -> PromotionRequest:
    """Break-glass: a person with manage_environment on the target asks, with a reason, to deploy
    inside a freeze window; a second such person confirms. Audited and notified."""
    if not (reason or "").strip():
        raise field_error("reason", "Say why the freeze must be broken.")
    if len(reason) > 500:  # saved without full_clean; PostgreSQL would refuse the value with a 500
        raise field_error("reason", "At most 500 characters.")
    with transaction.atomic():
        request = _locked(request)
        perms.require(actor, perms.VIEW, request.target)
        promotion_actions(actor, request)["override_freeze"].enforce()
        asking = request.freeze_override_requested_by_id is None
        transition(request, "override_freeze", actor=actor, reason=reason, now=timezone.now())
        if asking:
            audited_save(request, actor=actor, reason=f"freeze override asked: {reason}", clean=False)
            second = [u for u in perms.users_with(perms.MANAGE, request.target) if u.pk != actor.pk]
            _emit(request, Event.FREEZE_OVERRIDDEN, users=second, stage="asked", reason=reason, by=actor.get_username())
            return request
        audited_save(request, actor=actor, reason=f"freeze override confirmed: {reason}", clean=False)
        _emit(
            request,
            Event.FREEZE_OVERRIDDEN,
            users=[u for u in (request.requested_by, request.freeze_override_requested_by) if u],
            stage="confirmed",
            reason=request.freeze_override_reason,
            confirmation=reason,
            by=request.freeze_override_requested_by.get_username(),
            confirmed_by=actor.get_username(),
        )
        if request.state == S.APPROVED:
            request.blocked_reason = ""
            audited_save(request, actor=actor, reason="freeze override: deployment queued", clean=False)
            _queue_execution(request)
    return request


def request_for_user(actor, pk) -> PromotionRequest:
    """A request the actor may see (404 otherwise)."""
    from ..selectors import promotions_for

    request = promotions_for(actor).filter(pk=pk).first()
    if request is None:
        raise NotFound("No such promotion request.")
    return request
