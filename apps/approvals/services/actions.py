"""Who may do what to a promotion request: eligibility under the rules (separation of duties),
the per-action answers the services enforce and every surface renders, and each rule's status."""

from django_fsm import can_proceed

from apps.core.actions import ALLOWED, Answer, refused
from apps.core.errors import Conflict, DomainError, PermissionDenied
from apps.environments import permissions as perms

from ..models import ApprovalRule, Decision, PromotionRequest
from .base import _invalid_state
from .rules import rules_for

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
        error: DomainError = PermissionDenied(
            f"You cannot {verb} this request: {'; '.join(blockers)}.", code="not_eligible"
        )
        return refused(error, *blockers)
    # Only rules with a Git gate make the answer read the (stored, possibly large) plan's gates.
    git_rules = verb == "approve" and any(rule.require_git or rule.allowed_refs for rule in rules)
    failed = (
        [g for g in (request.plan or {}).get("gates", []) if g["gate"] in ("git", "refs") and not g["passed"]]
        if git_rules
        else []
    )
    if failed:  # the re-frozen plan says the repository no longer vouches for it
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


def rule_status(request: PromotionRequest, rules: list[ApprovalRule] | None = None, decisions=None) -> list[dict]:
    """Per rule: approvals that count (given against the current plan by eligible people) and whether it is met.
    `decisions`: the request's decisions when the caller holds them (default: request.decisions)."""
    rules = rules_for(request.pipeline, request.target) if rules is None else rules
    decisions = request.decisions.all() if decisions is None else decisions
    current = [d for d in decisions if d.decision == Decision.APPROVE and d.plan_hash == request.plan_hash]
    if rules:
        perms.prefetch([d.approver for d in current])  # every approver's grants at once, not per person
    status = []
    for rule in rules:
        counted = [d.approver.get_username() for d in current if _eligible(d.approver, rule, request)[0]]
        status.append(
            {
                "rule": rule.name,
                "rule_id": rule.pk,
                "scope": rule.project.slug if rule.project else "organization",
                "required_approvals": rule.required_approvals,
                "approvals": len(counted),
                "approved_by": counted,
                "met": len(counted) >= rule.required_approvals,
                "wait_minutes": rule.wait_minutes,
            }
        )
    return status


def _approvers_to_notify(request: PromotionRequest, rules) -> list:
    users = [u for u in perms.users_with(perms.APPROVE_PROMOTION, request.target) if u.pk != request.requested_by_id]
    if not rules:
        return users
    perms.prefetch(users)  # their grants at once, not per person
    return [u for u in users if any(_eligible(u, rule, request)[0] for rule in rules)]
