"""Approval rules: which rules cover a pipeline in a target, validating and saving them (never looser
than the organization's default), and the guard runs asks before a direct deploy."""

from django.db import IntegrityError, transaction
from django.db.models import Q

from apps.core import patterns
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed, field_error
from apps.core.services import audited_delete, audited_save, validate
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline
from apps.tenancy.models import Membership
from apps.tenancy.permissions import is_org_admin

from ..models import ApprovalRule

# --- rules ------------------------------------------------------------------------------------------


def _applicable_rules(pipeline: Pipeline, target: Environment):
    """The active rules covering the pipeline in `target`: the organization's and its project's."""
    return ApprovalRule.objects.filter(environment=target, is_active=True).filter(
        Q(project__isnull=True) | Q(project_id=pipeline.project_id)
    )


def rules_for(pipeline: Pipeline, target: Environment, *, sources: bool = True) -> list[ApprovalRule]:
    """The active rules a promotion of the pipeline into `target` must meet (organization + project).
    `sources=False`: without the rules' extra sources (deciding and deploying do not ask for them)."""
    prefetch = ("approver_users", "extra_sources") if sources else ("approver_users",)
    return list(
        _applicable_rules(pipeline, target)
        .select_related("approver_group", "project")
        .prefetch_related(*prefetch)
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


def _require_rule_admin(actor: User, rule: ApprovalRule) -> None:
    """Organization-wide rules are the organization admins'; a project's rules need manage_environment."""
    if rule.project_id is None:
        if not is_org_admin(actor, rule.environment.organization):
            raise PermissionDenied("Only organization owners and admins manage organization-wide approval rules.")
    else:
        perms.require(actor, perms.MANAGE, rule.environment)


def _looser_than(rule: ApprovalRule, default: ApprovalRule) -> dict[str, str]:
    """Fields in which a project rule would be looser than an organization default (field -> why),
    in the order of the form (the first is the error's message)."""
    as_default = f"as in the organization's '{default.name}'"

    def switched_off(name: str) -> bool:  # a check the default makes and the rule would not
        return getattr(default, name) and not getattr(rule, name)

    looser = {
        "required_approvals": (
            rule.required_approvals < default.required_approvals,
            f"at least {default.required_approvals} (the organization's '{default.name}')",
        ),
        "allow_self_approval": (rule.allow_self_approval and not default.allow_self_approval, f"off, {as_default}"),
        "exclude_version_author": (switched_off("exclude_version_author"), f"on, {as_default}"),
        "require_validation": (switched_off("require_validation"), f"on, {as_default}"),
        "validation_max_age_hours": (
            default.require_validation
            and rule.require_validation
            and rule.validation_max_age_hours > default.validation_max_age_hours,
            f"at most {default.validation_max_age_hours}",
        ),
        "require_data_diff": (switched_off("require_data_diff"), f"on, {as_default}"),
        "require_git": (switched_off("require_git"), f"on, {as_default}"),
        "require_ticket": (switched_off("require_ticket"), f"set, {as_default}"),
        "wait_minutes": (rule.wait_minutes < default.wait_minutes, f"at least {default.wait_minutes}"),
        "allowed_refs": (switched_off("allowed_refs"), f"set, {as_default} ({', '.join(default.allowed_refs or ())})"),
        "expires_after_hours": (
            default.expires_after_hours and not 0 < rule.expires_after_hours <= default.expires_after_hours,
            f"between 1 and {default.expires_after_hours} (0 would never expire)",
        ),
    }
    return {name: why for name, (is_looser, why) in looser.items() if is_looser}


def validate_rule(rule: ApprovalRule, *, approver_users=(), extra_sources=()) -> None:
    """Field checks, the tighten-never-loosen rule for project rules, and same-organization links."""
    # Before full_clean, whose constraint check would say only "Constraint “uniq_rule_name” is violated."
    taken = ApprovalRule.objects.filter(
        environment_id=rule.environment_id,
        project_id=rule.project_id,  # type: ignore[misc]  # None matches the organization-wide rules (IS NULL)
        name=rule.name,
    )
    if taken.exclude(pk=rule.pk).exists():
        message = f"A rule named '{rule.name}' already exists for this environment."
        raise Conflict(message, fields={"name": [message]}, code="duplicate_name")
    validate(rule)
    environment = rule.environment
    if rule.organization_id != environment.organization_id:
        raise field_error("environment", "The environment belongs to another organization.")
    if rule.project is not None and rule.project.organization_id != rule.organization_id:
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
def rule_save(
    *, actor: User, rule: ApprovalRule, approver_users=None, extra_sources=None, reason: str = ""
) -> ApprovalRule:
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
def rule_delete(*, actor: User, rule: ApprovalRule) -> None:
    _require_rule_admin(actor, rule)
    audited_delete(rule, actor=actor, reason="rule deleted")
