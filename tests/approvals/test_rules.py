"""Approval rules (apps/approvals/services/rules.py): field validation, tighten-never-loosen for
project rules, who manages which rule, how rules decide who may approve (restrictions,
self-approval, version author, one approval counting toward every rule), the guard against direct
deploys, and rules changing under open requests."""

import pytest
from django.contrib.auth.models import Group

from apps.approvals import services
from apps.approvals.models import ApprovalRule, PromotionState
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.notifications.models import Event, Notification
from apps.pipelines import services as pipeline_services
from apps.runs import services as run_services
from apps.runs.models import Deployment
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition

from .service_helpers import approve, execute, member, notified, production_request, request, set_rule

pytestmark = pytest.mark.django_db

S = PromotionState


def save(p, actor=None, **fields):
    fields.setdefault("environment", p["production"])
    fields.setdefault("name", "extra")
    approver_users = fields.pop("approver_users", None)
    extra_sources = fields.pop("extra_sources", None)
    return services.rule_save(
        actor=actor or p["org_admin"],
        rule=ApprovalRule(**fields),
        approver_users=approver_users,
        extra_sources=extra_sources,
    )


# --- field validation --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": ""}, "name"),
        ({"name": "x" * 101}, "name"),
        ({"required_approvals": 11}, "required_approvals"),
        ({"required_approvals": -1}, "required_approvals"),
        ({"validation_max_age_hours": 0}, "validation_max_age_hours"),
        ({"allowed_refs": "main"}, "allowed_refs"),
        ({"allowed_refs": ["main", ""]}, "allowed_refs"),
        ({"allowed_refs": ["main", 3]}, "allowed_refs"),
        ({"allowed_refs": ["x" * 201]}, "allowed_refs"),
        ({"require_ticket": "OPS-(\\d+"}, "require_ticket"),
        ({"require_ticket": "x" * 201}, "require_ticket"),
        ({"wait_minutes": 7 * 24 * 60 + 1}, "wait_minutes"),
        ({"expires_after_hours": 24 * 90 + 1}, "expires_after_hours"),
    ],
)
def test_every_field_is_validated_and_nothing_is_saved(promo, fields, field):
    before = ApprovalRule.objects.count()
    with pytest.raises(ValidationFailed) as err:
        save(promo, **fields)
    assert field in err.value.fields, err.value.fields
    assert ApprovalRule.objects.count() == before


def test_a_rule_needs_an_environment(promo):
    with pytest.raises(ValidationFailed) as err:
        services.rule_save(actor=promo["org_admin"], rule=ApprovalRule(name="nowhere"))
    assert "environment" in err.value.fields


def test_extra_sources_must_be_other_environments_of_the_organization(promo, platform_staff, org_admin):
    p = promo
    with pytest.raises(ValidationFailed) as err:
        save(p, extra_sources=[p["production"]])
    assert "extra_sources" in err.value.fields
    other = tenancy_services.organization_create(
        actor=platform_staff,
        name="Other",
        slug="other",
        edition=Edition.ENTERPRISE,
        max_environments=5,
        owner=org_admin,
    )
    foreign = env_services.environment_create(actor=org_admin, organization=other, name="Dev", kind=Kind.DEVELOPMENT)
    with pytest.raises(ValidationFailed) as err:
        save(p, extra_sources=[foreign])
    assert "extra_sources" in err.value.fields
    foreign_project = pipeline_services.project_create(actor=org_admin, organization=other, name="Theirs")
    with pytest.raises(ValidationFailed) as err:
        save(p, project=foreign_project)
    assert "project" in err.value.fields
    assert not ApprovalRule.objects.filter(name="extra").exists()


def test_approver_users_must_be_members_of_the_organization(promo, outsider):
    p = promo
    with pytest.raises(ValidationFailed) as err:
        save(p, approver_users=[outsider])
    assert "approver_users" in err.value.fields
    assert not ApprovalRule.objects.filter(name="extra").exists()
    rule = save(p, approver_users=[p["prod_approver"]])
    assert list(rule.approver_users.all()) == [p["prod_approver"]]


def test_a_duplicate_rule_name_is_refused(promo):
    p = promo
    before = ApprovalRule.objects.count()
    with pytest.raises((ValidationFailed, Conflict)):
        save(p, name="production review")
    assert ApprovalRule.objects.count() == before


def test_rule_changes_are_in_the_history_with_the_actor(promo):
    p = promo
    rule = p["production_rule"]
    rule.wait_minutes = 5
    services.rule_save(actor=p["org_admin"], rule=rule)
    latest = rule.history.first()
    assert latest.history_user == p["org_admin"] and latest.wait_minutes == 5
    pk = rule.pk
    services.rule_delete(actor=p["org_admin"], rule=rule)
    deleted = ApprovalRule.history.filter(id=pk).first()
    assert deleted.history_type == "-" and deleted.history_user == p["org_admin"]


# --- who manages rules -----------------------------------------------------------------------------------


def test_only_organization_admins_manage_organization_wide_rules(promo):
    p = promo
    manager = member(p, "prodmanager", {"production": [perms.MANAGE]})
    with pytest.raises(PermissionDenied):
        save(p, actor=manager, required_approvals=3)
    rule = p["production_rule"]
    rule.required_approvals = 1
    with pytest.raises(PermissionDenied):
        services.rule_save(actor=manager, rule=rule)
    with pytest.raises(PermissionDenied):
        services.rule_delete(actor=manager, rule=p["production_rule"])
    assert ApprovalRule.objects.get(pk=rule.pk).required_approvals == 2


def test_project_rules_need_manage_environment(promo):
    p = promo
    manager = member(p, "prodmanager", {"production": [perms.MANAGE]})
    with pytest.raises(PermissionDenied):
        save(p, actor=p["prod_approver"], project=p["project"], required_approvals=3, require_validation=True)
    rule = save(p, actor=manager, project=p["project"], required_approvals=3, require_validation=True)
    assert rule.pk and rule.organization_id == p["production"].organization_id
    # ... but a project manager cannot turn it into an organization-wide rule
    rule.project = None
    with pytest.raises(PermissionDenied):
        services.rule_save(actor=manager, rule=rule)
    assert ApprovalRule.objects.get(pk=rule.pk).project_id == p["project"].pk
    # nor move it into an environment they do not manage
    rule = ApprovalRule.objects.get(pk=rule.pk)
    rule.environment = p["staging"]
    with pytest.raises(PermissionDenied):
        services.rule_save(actor=manager, rule=rule)
    services.rule_delete(actor=manager, rule=ApprovalRule.objects.get(pk=rule.pk))
    assert not ApprovalRule.objects.filter(pk=rule.pk).exists()


# --- tighten, never loosen -------------------------------------------------------------------------------

STRICT_DEFAULT = {
    "required_approvals": 2,
    "exclude_version_author": True,
    "require_validation": True,
    "validation_max_age_hours": 12,
    "require_git": True,
    "require_ticket": r"^OPS-\d+$",
    "allowed_refs": ["main", "v*"],
    "wait_minutes": 10,
    "expires_after_hours": 48,
}


@pytest.mark.parametrize(
    ("loosened", "field"),
    [
        ({"required_approvals": 1}, "required_approvals"),
        ({"allow_self_approval": True}, "allow_self_approval"),
        ({"exclude_version_author": False}, "exclude_version_author"),
        ({"require_validation": False}, "require_validation"),
        ({"validation_max_age_hours": 48}, "validation_max_age_hours"),
        ({"require_git": False}, "require_git"),
        ({"require_ticket": ""}, "require_ticket"),
        ({"allowed_refs": []}, "allowed_refs"),
        ({"wait_minutes": 0}, "wait_minutes"),
        ({"expires_after_hours": 0}, "expires_after_hours"),
        ({"expires_after_hours": 96}, "expires_after_hours"),
    ],
)
def test_a_project_rule_may_not_loosen_the_organization_default(promo, loosened, field):
    p = promo
    default = p["production_rule"]
    for name, value in STRICT_DEFAULT.items():
        setattr(default, name, value)
    services.rule_save(actor=p["org_admin"], rule=default)
    before = ApprovalRule.objects.count()
    with pytest.raises(ValidationFailed) as err:
        save(p, project=p["project"], **{**STRICT_DEFAULT, **loosened})
    assert field in err.value.fields, err.value.fields
    assert field in err.value.message and "loosen" in err.value.message
    assert ApprovalRule.objects.count() == before


def test_a_project_rule_may_tighten_the_organization_default(promo):
    p = promo
    default = p["production_rule"]
    for name, value in STRICT_DEFAULT.items():
        setattr(default, name, value)
    services.rule_save(actor=p["org_admin"], rule=default)
    tighter = {
        **STRICT_DEFAULT,
        "required_approvals": 3,
        "validation_max_age_hours": 6,
        "wait_minutes": 30,
        "expires_after_hours": 24,
    }
    rule = save(p, project=p["project"], **tighter)
    assert rule.pk
    # an inactive default does not bind
    default.is_active = False
    services.rule_save(actor=p["org_admin"], rule=default)
    assert save(p, project=p["project"], name="lenient", required_approvals=1).pk


def test_a_project_rule_may_not_open_a_path_the_organization_does_not(promo):
    """Skipping a stage is an administrator's decision: a project rule cannot add extra sources."""
    p = promo
    manager = member(p, "prodmanager", {"production": [perms.MANAGE]})
    with pytest.raises(ValidationFailed) as err:
        save(
            p,
            actor=manager,
            project=p["project"],
            required_approvals=2,
            require_validation=True,
            extra_sources=[p["development"]],
        )
    assert "extra_sources" in err.value.fields
    # once the organization's rule allows it, a project rule may repeat it
    services.rule_save(actor=p["org_admin"], rule=p["production_rule"], extra_sources=[p["development"]])
    rule = save(
        p,
        actor=manager,
        project=p["project"],
        required_approvals=2,
        require_validation=True,
        extra_sources=[p["development"]],
    )
    assert list(rule.extra_sources.all()) == [p["development"]]


def test_project_rules_of_another_project_do_not_apply(promo):
    p = promo
    other = pipeline_services.project_create(actor=p["org_admin"], organization=p["project"].organization, name="Ops")
    save(p, project=other, required_approvals=5, require_validation=True)
    assert [r.name for r in services.rules_for(p["pipeline"], p["production"])] == ["production review"]


# --- who may approve ---------------------------------------------------------------------------------------


def test_one_approval_counts_toward_every_rule_its_author_is_eligible_for(promo):
    p = promo
    save(
        p,
        name="data owner",
        project=p["project"],
        required_approvals=2,
        require_validation=True,
        approver_users=[p["prod_approver"], p["prod_approver2"]],
    )
    third = member(p, "prodder3", {"production": [perms.VIEW, perms.APPROVE_PROMOTION]})
    promotion = production_request(p)
    promotion = approve(promotion, p["prod_approver"])
    status = {s["rule"]: s for s in services.rule_status(promotion)}
    assert status["production review"]["approvals"] == 1 and status["data owner"]["approvals"] == 1
    promotion = approve(promotion, third)  # counts for the organization's rule only
    status = {s["rule"]: s for s in services.rule_status(promotion)}
    assert status["production review"]["met"] and not status["data owner"]["met"]
    assert status["data owner"]["approved_by"] == [p["prod_approver"].username]
    assert promotion.state == PromotionState.PENDING
    promotion = approve(promotion, p["prod_approver2"])
    assert promotion.state == PromotionState.APPROVED
    assert all(s["met"] for s in services.rule_status(promotion))


def test_an_approver_group_restricts_who_counts(promo):
    p = promo
    group = Group.objects.create(name="release managers")
    rule = p["staging_rule"]
    rule.approver_group = group
    services.rule_save(actor=p["org_admin"], rule=rule)
    promotion = request(p)
    with pytest.raises(PermissionDenied) as err:
        approve(promotion, p["staging_approver"])
    assert "approvers" in err.value.message
    p["staging_approver"].groups.add(group)
    promotion = approve(promotion, p["staging_approver"])
    assert promotion.state == PromotionState.APPROVED


def test_approver_users_restrict_who_counts(promo):
    p = promo
    second = member(p, "stager2", {"staging": [perms.VIEW, perms.APPROVE_PROMOTION]})
    services.rule_save(actor=p["org_admin"], rule=p["staging_rule"], approver_users=[second])
    promotion = request(p)
    assert Notification.objects.filter(user=second, event=Event.PROMOTION_REQUESTED).exists()
    assert not Notification.objects.filter(user=p["staging_approver"], event=Event.PROMOTION_REQUESTED).exists()
    with pytest.raises(PermissionDenied):
        approve(promotion, p["staging_approver"])
    assert approve(promotion, second).state == PromotionState.APPROVED


def test_a_listed_approver_still_needs_the_approve_permission(promo):
    p = promo
    viewer = member(p, "viewer", {"staging": [perms.VIEW]})
    services.rule_save(actor=p["org_admin"], rule=p["staging_rule"], approver_users=[viewer])
    promotion = request(p)
    with pytest.raises(PermissionDenied) as err:
        approve(promotion, viewer)
    assert "approve_promotion" in err.value.message


def test_exclude_version_author(promo):
    p = promo  # the org admin wrote v1; the developer requests
    promotion = request(p)
    assert services.approval_blockers(p["org_admin"], promotion) == []
    rule = p["staging_rule"]
    rule.exclude_version_author = True
    services.rule_save(actor=p["org_admin"], rule=rule)
    with pytest.raises(PermissionDenied) as err:
        approve(promotion, p["org_admin"])
    assert "wrote this version" in err.value.message
    assert approve(promotion, p["staging_approver"]).state == PromotionState.APPROVED


def test_self_approval_only_when_a_rule_allows_it(promo):
    p = promo
    env_services.permission_grant(
        actor=p["org_admin"], environment=p["staging"], codename=perms.APPROVE_PROMOTION, user=p["developer"]
    )
    perms.forget(p["developer"])
    promotion = request(p)
    with pytest.raises(PermissionDenied) as err:
        approve(promotion, p["developer"])
    assert "you cannot approve your own request" in err.value.message
    rule = p["staging_rule"]
    rule.allow_self_approval = True
    services.rule_save(actor=p["org_admin"], rule=rule)
    assert approve(promotion, p["developer"]).state == PromotionState.APPROVED


def test_a_gates_only_rule_approves_at_once(promo):
    """required_approvals=0 makes a gates-only rule: nobody has to approve."""
    p = promo
    rule = p["staging_rule"]
    rule.required_approvals = 0
    rule.require_ticket = r"^OPS-\d+$"
    services.rule_save(actor=p["org_admin"], rule=rule)
    with pytest.raises(ValidationFailed):
        request(p)
    promotion = request(p, ticket="OPS-1")
    assert promotion.state == PromotionState.APPROVED


# --- direct deploys ------------------------------------------------------------------------------------------------


def test_direct_deploys_into_an_environment_with_approval_rules_are_refused(promo):
    p = promo
    with pytest.raises(PermissionDenied) as err:
        run_services.deploy_direct(
            actor=p["org_admin"], pipeline=p["pipeline"], environment=p["staging"], version=p["version"]
        )
    assert "promotion" in err.value.message
    assert not Deployment.objects.filter(environment=p["staging"]).exists()
    services.rule_delete(actor=p["org_admin"], rule=p["staging_rule"])
    run_services.deploy_direct(
        actor=p["org_admin"], pipeline=p["pipeline"], environment=p["staging"], version=p["version"]
    )


# --- rules changing under open requests --------------------------------------------------------------------------


def test_an_approval_approves_once_the_rules_are_gone(promo):
    p = promo
    promotion = request(p)
    services.rule_delete(actor=p["org_admin"], rule=p["staging_rule"])
    with pytest.raises(PermissionDenied):
        approve(promotion, p["developer"])  # still not the requester
    promotion = approve(promotion, p["staging_approver"])
    assert promotion.state == S.APPROVED


def test_a_rule_tightened_after_approval_sends_the_request_back(promo):
    p = promo
    promotion = approve(request(p), p["staging_approver"])
    set_rule(p, "staging_rule", required_approvals=2)
    promotion = execute(promotion)
    assert promotion.state == S.PENDING and not Deployment.objects.filter(environment=p["staging"]).exists()
    promotion = approve(promotion, p["org_admin"])
    assert promotion.state == S.APPROVED
    assert execute(promotion).state == S.DEPLOYED


def test_a_gate_added_after_approval_fails_the_deployment(promo):
    p = promo
    promotion = approve(request(p), p["staging_approver"])
    set_rule(p, "staging_rule", require_ticket=r"^OPS-\d+$")
    promotion = execute(promotion)
    assert promotion.state == S.FAILED and "gate failed" in promotion.failure_reason
    assert notified(p["developer"], Event.PROMOTION_FAILED)
