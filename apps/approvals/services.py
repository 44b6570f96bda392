"""Promotions: approval rules, requests with a frozen plan, decisions, the state machine, the
deploying worker, sweeps, freeze-window break-glass and rollback.

The PromotionRequest row is the outbox: every transition is committed to the row first, and Celery
is only the wake-up. A request deploys at most once: the deploying step locks the row, checks its
state, and records the Deployment and the `deployed` state in one transaction."""

import hashlib
import json
import logging
from datetime import timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from django_fsm import TransitionNotAllowed, can_proceed

from apps.core import idempotency, patterns
from apps.core.actions import ALLOWED, Answer, refused
from apps.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed, field_error
from apps.core.services import audited_delete, audited_save, validate
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.environments.services import active_freeze, environment_emit
from apps.notifications.models import Event
from apps.pipelines import graph as graphs
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.repositories import gates as git_gates
from apps.resolution import engine
from apps.runs import services as run_services
from apps.runs.models import Deployment, Run, RunStatus
from apps.tenancy.models import Edition, Membership
from apps.tenancy.permissions import is_org_admin

from .models import (
    OPEN_STATES,
    ApprovalDecision,
    ApprovalRule,
    Decision,
    PromotionRequest,
    PromotionState,
    WatchState,
)

logger = logging.getLogger("planasonix.approvals")

S = PromotionState
MAX_TEXT = 4000  # reason and comment columns


def _invalid_state(request: PromotionRequest, name: str) -> Conflict:
    verb = name.replace("_", " ")
    return Conflict(f"Cannot {verb} promotion request #{request.pk}: it is {request.state}.", code="invalid_state")


def transition(request: PromotionRequest, name: str, **kwargs) -> None:
    """Apply one of PromotionRequest's declared transitions (the caller holds the row lock and saves);
    a transition the current state does not allow is the domain's 409 naming that state."""
    try:
        getattr(request, name)(**kwargs)
    except TransitionNotAllowed:
        raise _invalid_state(request, name) from None


# --- rules ------------------------------------------------------------------------------------------


def _applicable_rules(pipeline: Pipeline, target: Environment):
    """The active rules covering the pipeline in `target`: the organization's and its project's."""
    return ApprovalRule.objects.filter(environment=target, is_active=True).filter(
        Q(project__isnull=True) | Q(project_id=pipeline.project_id)
    )


def rules_for(pipeline: Pipeline, target: Environment) -> list[ApprovalRule]:
    """The active rules a promotion of the pipeline into `target` must meet (organization + project)."""
    return list(
        _applicable_rules(pipeline, target)
        .select_related("approver_group", "project")
        .prefetch_related("approver_users", "extra_sources")
        .order_by("project_id", "name")
    )


def rules_for_requests(requests) -> dict[int, list[ApprovalRule]]:
    """rules_for each of many requests (request pk -> rules) in one query, with what eligibility needs."""
    requests = list(requests)
    rules = list(
        ApprovalRule.objects.filter(is_active=True, environment_id__in={r.target_id for r in requests})
        .select_related("approver_group", "project")
        .prefetch_related("approver_users")
        .order_by("project_id", "name")
    )
    return {
        r.pk: [
            rule
            for rule in rules
            if rule.environment_id == r.target_id and rule.project_id in (None, r.pipeline.project_id)
        ]
        for r in requests
    }


def direct_deploy_guard(pipeline: Pipeline, environment: Environment) -> str | None:
    """runs asks before a direct deploy: a pipeline that approval rules cover in the environment (its
    organization's or its own project's, as in rules_for) reaches it through promotions only."""
    if _applicable_rules(pipeline, environment).exists():
        return f"'{environment.slug}' has approval rules for this project: deploy to it through a promotion request."
    return None


def _require_rule_admin(actor, rule: ApprovalRule) -> None:
    """Organization-wide rules are the organization admins'; a project's rules need manage_environment."""
    if rule.project_id is None:
        if not is_org_admin(actor, rule.environment.organization):
            raise PermissionDenied("Only organization owners and admins manage organization-wide approval rules.")
    else:
        perms.require(actor, perms.MANAGE, rule.environment)


def _looser_than(rule: ApprovalRule, default: ApprovalRule) -> dict[str, str]:
    """Fields in which a project rule would be looser than an organization default (field -> why)."""
    problems = {}
    if rule.required_approvals < default.required_approvals:
        problems["required_approvals"] = f"at least {default.required_approvals} (the organization's '{default.name}')"
    if rule.allow_self_approval and not default.allow_self_approval:
        problems["allow_self_approval"] = f"off, as in the organization's '{default.name}'"
    if default.exclude_version_author and not rule.exclude_version_author:
        problems["exclude_version_author"] = f"on, as in the organization's '{default.name}'"
    if default.require_validation and not rule.require_validation:
        problems["require_validation"] = f"on, as in the organization's '{default.name}'"
    if (
        default.require_validation
        and rule.require_validation
        and rule.validation_max_age_hours > default.validation_max_age_hours
    ):
        problems["validation_max_age_hours"] = f"at most {default.validation_max_age_hours}"
    if default.require_git and not rule.require_git:
        problems["require_git"] = f"on, as in the organization's '{default.name}'"
    if default.require_ticket and not rule.require_ticket:
        problems["require_ticket"] = f"set, as in the organization's '{default.name}'"
    if rule.wait_minutes < default.wait_minutes:
        problems["wait_minutes"] = f"at least {default.wait_minutes}"
    if default.allowed_refs and not rule.allowed_refs:
        problems["allowed_refs"] = f"set, as in the organization's '{default.name}' ({', '.join(default.allowed_refs)})"
    if default.expires_after_hours and not 0 < rule.expires_after_hours <= default.expires_after_hours:
        problems["expires_after_hours"] = f"between 1 and {default.expires_after_hours} (0 would never expire)"
    return problems


def validate_rule(rule: ApprovalRule, *, approver_users=(), extra_sources=()) -> None:
    """Field checks, the tighten-never-loosen rule for project rules, and same-organization links."""
    # Before full_clean, whose constraint check would say only "Constraint “uniq_rule_name” is violated."
    taken = ApprovalRule.objects.filter(environment_id=rule.environment_id, project_id=rule.project_id, name=rule.name)
    if taken.exclude(pk=rule.pk).exists():
        message = f"A rule named '{rule.name}' already exists for this environment."
        raise Conflict(message, fields={"name": [message]}, code="duplicate_name")
    validate(rule)
    environment = rule.environment
    if rule.organization_id != environment.organization_id:
        raise field_error("environment", "The environment belongs to another organization.")
    if rule.project_id and rule.project.organization_id != rule.organization_id:
        raise field_error("project", "The project belongs to another organization.")
    if rule.require_ticket:
        patterns.check_pattern(rule.require_ticket, "require_ticket")
    for source in extra_sources:
        if source.organization_id != rule.organization_id or source.pk == environment.pk:
            raise field_error("extra_sources", f"'{source.slug}' cannot promote into '{environment.slug}'.")
    members = set(
        Membership.objects.filter(organization_id=rule.organization_id, user__in=approver_users).values_list(
            "user_id", flat=True
        )
    )
    for user in approver_users:
        if user.pk not in members:
            raise field_error("approver_users", f"{user.get_username()} is not a member of this organization.")
    if rule.project_id:
        defaults = ApprovalRule.objects.filter(environment=environment, project__isnull=True, is_active=True)
        # Skipping a stage is the organization's decision (DESIGN.md §4): a project rule may only
        # repeat the extra sources an organization-wide rule allows.
        allowed_sources = set(
            ApprovalRule.extra_sources.through.objects.filter(approvalrule__in=defaults).values_list(
                "environment_id", flat=True
            )
        )
        for source in extra_sources:
            if source.pk not in allowed_sources:
                raise field_error(
                    "extra_sources",
                    f"Only an organization-wide rule may let '{source.slug}' skip the path into "
                    f"'{environment.slug}'; a project rule may tighten but not loosen.",
                )
        for default in defaults:
            problems = _looser_than(rule, default)
            if problems:
                name, why = next(iter(problems.items()))
                raise ValidationFailed(
                    f"{name}: a project rule may tighten the organization's rules but not loosen them; must be {why}.",
                    fields={field: [f"Must be {text}."] for field, text in problems.items()},
                )


@transaction.atomic
def rule_save(*, actor, rule: ApprovalRule, approver_users=None, extra_sources=None, reason: str = "") -> ApprovalRule:
    """Create or update a rule (caller builds the unsaved or changed instance)."""
    if rule.environment_id is None:
        raise field_error("environment", "Choose the target environment.")
    rule.organization_id = rule.environment.organization_id
    _require_rule_admin(actor, rule)
    if rule.pk:
        stored = ApprovalRule.objects.select_related("environment").get(pk=rule.pk)
        _require_rule_admin(actor, stored)
    users = list(approver_users) if approver_users is not None else (list(rule.approver_users.all()) if rule.pk else [])
    sources = list(extra_sources) if extra_sources is not None else (list(rule.extra_sources.all()) if rule.pk else [])
    validate_rule(rule, approver_users=users, extra_sources=sources)
    try:
        with transaction.atomic():
            audited_save(
                rule, actor=actor, reason=reason or ("rule updated" if rule.pk else "rule created"), clean=False
            )
    except IntegrityError as exc:
        raise Conflict(f"A rule named '{rule.name}' already exists for this environment.") from exc
    if approver_users is not None:
        rule.approver_users.set(users)
    if extra_sources is not None:
        rule.extra_sources.set(sources)
    return rule


@transaction.atomic
def rule_delete(*, actor, rule: ApprovalRule) -> None:
    _require_rule_admin(actor, rule)
    audited_delete(rule, actor=actor, reason="rule deleted")


_UNREAD = object()  # "the caller has not read the active deployment" (None means there is none)

# --- the plan ------------------------------------------------------------------------------------------


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def config_diff(before: dict | None, after: dict) -> list[dict]:
    """Leaf-by-leaf differences between two configuration views (variables, connections, policy)."""
    left, right = {}, {}
    for part in ("variables", "connections", "policy"):
        _flatten(part, (before or {}).get(part) or {}, left)
        _flatten(part, after.get(part) or {}, right)
    return [
        {"path": path, "before": left.get(path), "after": right.get(path)}
        for path in sorted(left.keys() | right.keys())
        if left.get(path) != right.get(path)
    ]


def plan_hash_of(version: PipelineVersion, after: dict, *, git: dict | None = None) -> str:
    """Covers the version's content, the target's resolved configuration (secrets as references) and
    what the repository says about the commit (a force-push that drops it makes the plan stale)."""
    covered = {"version": version.content_hash, "config": after}
    if git and git.get("from_git"):
        covered["git"] = git
    canonical = json.dumps(
        covered,
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _readiness(answer: dict) -> dict:
    errors = answer["errors"]
    return {
        "ready": not errors,
        "problems": [{"code": e["code"], "path": e["path"], "message": e["message"]} for e in errors],
    }


def build_plan(
    pipeline: Pipeline, version: PipelineVersion, target: Environment, *, deployed=_UNREAD
) -> tuple[dict, str]:
    """Freeze what deploying `version` into `target` changes: graph diff against the deployed version,
    the target's resolved configuration before/after (secrets redacted), readiness; and the hash.
    `deployed`: the target's active deployment when the caller has read it already."""
    if deployed is _UNREAD:
        deployed = run_services.active_deployment(pipeline, target)
    before_version = deployed.version if deployed else None
    after_answer = engine.resolve(pipeline, target, version=version)
    after = engine.config_view(after_answer)
    # "Before" is the target as it was when the running version was deployed (stored on the deployment;
    # rebuilt from history only for deployments made before it was stored), so approvers see
    # configuration changes made since then as well as the version's own.
    before = None
    if deployed is not None:
        before = (
            deployed.resolved
            if deployed.resolved_document_id
            else engine.config_view(engine.resolve(pipeline, target, version=before_version, as_of=deployed.created_at))
        )
    plan = {
        "version": {
            "number": version.number,
            "content_hash": version.content_hash,
            "message": version.message,
            "git_commit": version.git_commit,
            "git_branch": version.git_branch,
            "git_tag": version.git_tag,
            "compare_url": version.compare_url,
            "git": git_gates.plan_view(version, before_version),
        },
        "target": target.slug,
        "target_deployed_version": before_version.number if before_version else None,
        "graph_diff": graphs.diff(before_version.graph if before_version else None, version.graph),
        "config_before": before,
        "config_after": after,
        "config_diff": config_diff(before, after),
        "readiness": _readiness(after_answer),
        "config_revision": after_answer.get("config_revision"),
    }
    return plan, plan_hash_of(version, after, git=plan["version"]["git"])


# --- gates ------------------------------------------------------------------------------------------------


def _latest_validation(request_like, rule: ApprovalRule, since) -> Run | None:
    """A succeeded run of the version in the source environment whose baseline comparison (if any)
    did not fail, finished after `since`."""
    candidates = Run.objects.filter(
        version=request_like.version,
        environment=request_like.source,
        status=RunStatus.SUCCEEDED,
        finished_at__gte=since,
    ).order_by("-finished_at")
    for run in candidates[:20]:
        if not run.baseline or run.baseline.get("passed") is not False:
            return run
    return None


def evaluate_gates(request_like, rules: list[ApprovalRule], *, at=None) -> list[dict]:
    """Each rule's gates for a request (or an unsaved one): validation, git, refs, ticket."""
    at = at or timezone.now()
    version = request_like.version
    gates = []
    found = None  # the repository's evidence, read once when a rule asks for it
    for rule in rules:
        if rule.require_validation:
            since = at - timedelta(hours=rule.validation_max_age_hours)
            run = _latest_validation(request_like, rule, since)
            gates.append(
                {
                    "gate": "validation",
                    "rule": rule.name,
                    "passed": run is not None,
                    "run": run.pk if run else None,
                    "finished_at": run.finished_at.isoformat() if run else None,
                    "detail": (
                        f"run #{run.pk} passed in {request_like.source.slug}"
                        if run
                        else f"no passing run of v{version.number} in {request_like.source.slug} "
                        f"within {rule.validation_max_age_hours} h"
                    ),
                }
            )
        if rule.require_git or rule.allowed_refs:
            found = found or git_gates.evidence(version)
            gates.extend(git_gates.git_gates(found, rule))
        if rule.require_ticket:
            ok = patterns.fullmatch(rule.require_ticket, request_like.ticket or "")
            gates.append(
                {
                    "gate": "ticket",
                    "rule": rule.name,
                    "passed": ok,
                    "detail": f"ticket '{request_like.ticket}'" if ok else f"a ticket matching {rule.require_ticket}",
                }
            )
    return gates


# --- who may approve --------------------------------------------------------------------------------------


def _eligible(
    user, rule: ApprovalRule, request: PromotionRequest, verb: str = "approve", group_ids: set[int] | None = None
) -> tuple[bool, str]:
    """May `user`'s decision count toward `rule`? (and why not; separation of duties is said first).
    `group_ids`: the user's groups, when the caller read them once for many requests."""
    if user.pk == request.requested_by_id and not rule.allow_self_approval:
        return False, f"you cannot {verb} your own request"
    if not perms.may(user, perms.APPROVE_PROMOTION, request.target):
        return False, f"you lack approve_promotion on '{request.target.slug}'"
    restricted_users = {u.pk for u in rule.approver_users.all()}
    if rule.approver_group_id or restricted_users:
        if group_ids is None:
            in_group = bool(rule.approver_group_id) and user.groups.filter(pk=rule.approver_group_id).exists()
        else:
            in_group = rule.approver_group_id in group_ids
        if not in_group and user.pk not in restricted_users:
            return False, f"you are not among rule '{rule.name}''s approvers"
    if rule.exclude_version_author and user.pk == request.version.author_id:
        return False, "you wrote this version, and rule '" + rule.name + "' excludes its author"
    return True, ""


def _decision_blockers(user, request: PromotionRequest, rules: list[ApprovalRule], verb: str, group_ids) -> list[str]:
    """Why `user` may not decide (approve or reject) `request` under its rules (empty: they may)."""
    if not rules:
        if user.pk == request.requested_by_id:
            return [f"you cannot {verb} your own request"]
        ok = perms.may(user, perms.APPROVE_PROMOTION, request.target)
        return [] if ok else [f"you lack approve_promotion on '{request.target.slug}'"]
    reasons = []
    for rule in rules:
        ok, why = _eligible(user, rule, request, verb, group_ids)
        if ok:
            return []
        reasons.append(why)
    return list(dict.fromkeys(reasons))


def _state_refusal(request: PromotionRequest, name: str) -> Answer | None:
    """The state machine's part of an answer: refused (409 naming the state) unless the current
    state has the transition `name` (its conditions are answered with their own reasons)."""
    if can_proceed(getattr(request, name), check_conditions=False):
        return None
    return refused(_invalid_state(request, name), f"the request is {request.state}")


def _decide_answer(user, request: PromotionRequest, rules: list[ApprovalRule], verb: str, group_ids=None) -> Answer:
    state = _state_refusal(request, verb)
    if state is not None:
        return state
    blockers = _decision_blockers(user, request, rules, verb, group_ids)
    if blockers:
        error = PermissionDenied(f"You cannot {verb} this request: {'; '.join(blockers)}.", code="not_eligible")
        return refused(error, *blockers)
    failed = [g for g in (request.plan or {}).get("gates", []) if g["gate"] in ("git", "refs") and not g["passed"]]
    if verb == "approve" and failed:  # the re-frozen plan says the repository no longer vouches for it
        reasons = [f"rule '{g['rule']}' needs {g['detail']}" for g in failed]
        error = Conflict(
            f"The repository no longer vouches for this version: {'; '.join(reasons)}.", code="gate_failed"
        )
        return refused(error, *reasons)
    mine = next((d for d in request.decisions.all() if d.approver_id == user.pk), None)
    if mine is not None and mine.plan_hash == request.plan_hash:
        error = Conflict(f"You already decided on this request ({mine.decision}d).", code="already_decided")
        return refused(error, f"you already decided on this plan ({mine.decision}d)")
    return ALLOWED


def _requester_or_manager_answer(user, request: PromotionRequest, verb: str) -> Answer:
    state = _state_refusal(request, verb)
    if state is not None:
        return state
    if user.pk != request.requested_by_id and not perms.may(user, perms.MANAGE, request.target):
        message = f"Only the requester or someone who manages the target environment may {verb}."
        return refused(PermissionDenied(message), f"only the requester or someone who manages '{request.target.slug}'")
    return ALLOWED


def _override_freeze_answer(user, request: PromotionRequest) -> Answer:
    state = _state_refusal(request, "override_freeze")
    if state is not None:
        return state
    if not perms.may(user, perms.MANAGE, request.target):
        error = PermissionDenied(
            f"You lack the '{perms.MANAGE}' permission on environment '{request.target.slug}'.",
            code="permission_denied",
        )
        return refused(error, f"you lack {perms.MANAGE} on '{request.target.slug}'")
    if request.freeze_override_confirmed_by_id:
        return refused(Conflict("The freeze override is already confirmed.", code="already_confirmed"))
    if request.freeze_override_requested_by_id == user.pk:
        error = PermissionDenied("A second person must confirm the freeze override.", code="second_person_required")
        return refused(error)
    return ALLOWED


def _refuse_state(request: PromotionRequest, name: str) -> None:
    refusal = _state_refusal(request, name)
    if refusal is not None:
        refusal.enforce()


PROMOTION_ACTIONS = ("approve", "reject", "cancel", "retry", "override_freeze")


def promotion_actions(
    user, request: PromotionRequest, rules: list[ApprovalRule] | None = None, *, group_ids: set[int] | None = None
) -> dict[str, Answer]:
    """For each of PROMOTION_ACTIONS: allowed, or the reasons it is not (and the error the service
    raises). The services enforce it; the API, the screens and the admin render it. Uses the
    request's (prefetched) decisions; `rules` defaults to rules_for the request; `group_ids` (the
    user's groups) lets a caller answering for many requests read them once."""
    rules = rules_for(request.pipeline, request.target) if rules is None else rules
    return {
        "approve": _decide_answer(user, request, rules, "approve", group_ids),
        "reject": _decide_answer(user, request, rules, "reject", group_ids),
        "cancel": _requester_or_manager_answer(user, request, "cancel"),
        "retry": _requester_or_manager_answer(user, request, "retry"),
        "override_freeze": _override_freeze_answer(user, request),
    }


def approval_blockers(user, request: PromotionRequest, rules: list[ApprovalRule] | None = None) -> list[str]:
    """Why `user` may not approve `request` (empty: they may): promotion_actions' approve answer."""
    rules = rules_for(request.pipeline, request.target) if rules is None else rules
    return list(_decide_answer(user, request, rules, "approve").reasons)


def rule_status(request: PromotionRequest, rules: list[ApprovalRule] | None = None) -> list[dict]:
    """Per rule: approvals that count (given against the current plan by eligible people) and whether it is met."""
    rules = rules_for(request.pipeline, request.target) if rules is None else rules
    current = [
        d for d in request.decisions.all() if d.decision == Decision.APPROVE and d.plan_hash == request.plan_hash
    ]
    status = []
    for rule in rules:
        counted = [d.approver.get_username() for d in current if _eligible(d.approver, rule, request)[0]]
        status.append(
            {
                "rule": rule.name,
                "rule_id": rule.pk,
                "scope": rule.project.slug if rule.project_id else "organization",
                "required_approvals": rule.required_approvals,
                "approvals": len(counted),
                "approved_by": counted,
                "met": len(counted) >= rule.required_approvals,
                "wait_minutes": rule.wait_minutes,
            }
        )
    return status


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


def _approvers_to_notify(request: PromotionRequest, rules) -> list:
    users = [u for u in perms.users_with(perms.APPROVE_PROMOTION, request.target) if u.pk != request.requested_by_id]
    if not rules:
        return users
    return [u for u in users if any(_eligible(u, rule, request)[0] for rule in rules)]


def _payload(request: PromotionRequest, **extra) -> dict:
    return {
        "promotion": request.pk,
        "pipeline": request.pipeline.slug,
        "version": request.version.number,
        "source": request.source.slug,
        "target": request.target.slug,
        "state": request.state,
        "requested_by": request.requested_by.get_username() if request.requested_by else None,
        **extra,
    }


def _emit(request: PromotionRequest, event: str, *, users=(), **extra) -> None:
    """Notify the target environment's channels, and these users in their inboxes and by email (an
    email delivery each, through the outbox), once the transaction commits."""
    title = f"{event}: {request.pipeline.slug} v{request.version.number} → {request.target.slug}"
    payload = {"title": title, **_payload(request, **extra)}
    environment_emit(request.target, event, payload, users=list(users), email_users=True)


def _enqueue(task, args, countdown: float | None = None) -> None:
    try:
        task.apply_async(args=args, countdown=countdown)
    except Exception:  # broker down: the row is the truth and the beat sweep finds it
        logger.warning("could not enqueue %s; the sweep will pick the work up", task.name)


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


def _locked(request: PromotionRequest) -> PromotionRequest:
    return (
        PromotionRequest.objects.select_for_update(of=("self",))
        .select_related(
            "pipeline__project", "version", "source", "target__policy", "target__organization", "requested_by"
        )
        .get(pk=request.pk)
    )


def refresh_plan(request: PromotionRequest, *, actor=None, deployed=_UNREAD) -> bool:
    """Re-freeze the plan if the version's content or the target's configuration changed (caller
    holds the row lock). Earlier approvals stop counting; an approved request goes back to pending
    and those who approved are asked to look again. Returns True when the plan changed."""
    plan, plan_hash = build_plan(request.pipeline, request.version, request.target, deployed=deployed)
    if plan_hash == request.plan_hash:
        # Readiness is not in the hash (a secret newly allowed in the target changes no reference):
        # keep it current, or a fixed target would fail the deploying step's readiness check forever.
        if plan["readiness"] != request.plan.get("readiness"):
            request.plan = {**request.plan, "readiness": plan["readiness"]}
            audited_save(request, actor=actor, reason="readiness re-checked", clean=False)
        return False
    rules = rules_for(request.pipeline, request.target)
    plan["gates"] = evaluate_gates(request, rules, at=request.created_at)
    previous = request.plan_hash
    request.plan, request.plan_hash, request.plan_frozen_at = plan, plan_hash, timezone.now()
    if request.state == S.APPROVED:
        transition(request, "reopen")
    audited_save(request, actor=actor, reason="plan changed: earlier approvals no longer count", clean=False)
    approvers = [
        d.approver for d in request.decisions.select_related("approver") if d.plan_hash == previous
    ] or _approvers_to_notify(request, rules)
    _emit(request, Event.APPROVAL_REMINDER, users=approvers, reason="plan_changed")
    return True


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
    from .tasks import execute_promotion

    pk = request.pk
    transaction.on_commit(lambda: _enqueue(execute_promotion, [pk], countdown=countdown or None), robust=True)


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
    from .tasks import execute_promotion

    for pk in due:
        _enqueue(execute_promotion, [pk])
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
            deployment_rollback(
                actor=None,
                deployment=request.deployment,
                reason=f"automatic: run #{failed[0].pk} failed within the first {policy.watch_first_runs} runs",
            )
            result["rolled_back"] += 1
        elif failed or len(watched) >= policy.watch_first_runs:
            request.watch_state = WatchState.PASSED if not failed else WatchState.NONE
            audited_save(request, actor=None, reason="watch ended", clean=False)
            result["passed"] += int(not failed)


# --- rollback ---------------------------------------------------------------------------------------------------


def deployment_rollback(*, actor, deployment: Deployment, reason: str = "") -> tuple[Deployment, list[Run]]:
    """Redeploy the version before `deployment` as a new deployment (history is never rewritten) and
    list the runs the rolled-back version wrote. `actor=None` is the platform's automatic rollback."""
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update(of=("self",))
            .select_related("environment__organization", "pipeline__project", "version", "previous__version")
            .get(pk=deployment.pk)
        )
        if actor is not None:
            perms.require(actor, perms.VIEW, deployment.environment)
        run_services.deployment_actions(actor, deployment)["rollback"].enforce()
        target_version = deployment.previous.version
        note = f"rollback of v{deployment.version.number} to v{target_version.number}"
        new = run_services.deploy(
            actor=actor,
            pipeline=deployment.pipeline,
            environment=deployment.environment,
            version=target_version,
            note=(f"{note}: {reason}" if reason else note)[:500],  # Deployment.note holds 500
        )
        runs = list(
            Run.objects.filter(deployment=deployment).select_related("environment", "version").order_by("created_at")
        )
        if deployment.promotion_request_id:
            request = (
                PromotionRequest.objects.select_for_update(of=("self",))
                .filter(pk=deployment.promotion_request_id)
                .first()
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
    return new, runs


def runs_written_by(deployment: Deployment) -> list[Run]:
    """Runs (and so destination tables) written by a deployment's version while it was active."""
    return list(Run.objects.filter(deployment=deployment).order_by("created_at"))


def request_for_user(actor, pk) -> PromotionRequest:
    """A request the actor may see (404 otherwise)."""
    from .selectors import promotions_for

    request = promotions_for(actor).filter(pk=pk).first()
    if request is None:
        raise NotFound("No such promotion request.")
    return request
