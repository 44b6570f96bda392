"""One action answer per object (issue 10): promotion_actions is what the services enforce and what
the API (`actions`, `can_approve`, `approval_blockers`), the admin and "awaiting me" render; reject
obeys the rules' eligibility like approve; the direct-deploy guard asks per (project, environment);
deployments and runs answer the same way (rollback; cancel, rerun)."""

import pytest
from django.contrib.auth import get_user_model

from apps.approvals import selectors, services
from apps.approvals.models import ApprovalDecision, ApprovalRule, PromotionRequest, PromotionState
from apps.core.errors import Conflict, PermissionDenied
from apps.environments import permissions as perms
from apps.pipelines import services as pipeline_services
from apps.runs import services as run_services
from apps.runs.models import Deployment
from tests.runs.conftest import GRAPH

from .service_helpers import approve, member, new_version, request, run_ok

pytestmark = pytest.mark.django_db

User = get_user_model()
S = PromotionState
PROMOTIONS = "/api/v1/promotions/"


def detail(api, user, promotion) -> dict:
    response = api(user).get(f"{PROMOTIONS}{promotion.pk}/")
    assert response.status_code == 200, response.content
    return response.json()


def set_rule(p, key, users=None, **fields):
    rule = p[key]
    for name, value in fields.items():
        setattr(rule, name, value)
    return services.rule_save(actor=p["org_admin"], rule=rule, approver_users=users)


# --- approving once: page, API and service agree ------------------------------------------------------------


def test_after_approving_once_the_api_says_no_with_the_reason_the_service_gives(api, promo):
    p = promo
    set_rule(p, "staging_rule", required_approvals=2)
    second = member(p, "stager2", {"staging": [perms.VIEW, perms.APPROVE_PROMOTION]})
    promotion = request(p)
    approve(promotion, p["staging_approver"])
    body = detail(api, p["staging_approver"], promotion)
    reason = "you already decided on this plan (approved)"
    assert body["can_approve"] is False and body["approval_blockers"] == [reason]
    assert body["actions"]["approve"] == {"allowed": False, "reasons": [reason]}
    assert body["actions"]["reject"] == {"allowed": False, "reasons": [reason]}
    with pytest.raises(Conflict) as err:
        services.promotion_approve(actor=p["staging_approver"], request=promotion)
    assert err.value.code == "already_decided"
    # the second approver may, and the API says so before they press
    assert detail(api, second, promotion)["actions"]["approve"] == {"allowed": True, "reasons": []}


def test_every_answer_the_api_gives_is_what_the_service_does(api, promo):
    """For each action and each persona: allowed in `actions` exactly when the service accepts it."""
    p = promo
    bystander = member(p, "bystander", {"staging": [perms.VIEW]})
    people = [p["developer"], p["staging_approver"], bystander, p["org_admin"]]
    calls = {
        "approve": lambda user, r: services.promotion_approve(actor=user, request=r),
        "reject": lambda user, r: services.promotion_reject(actor=user, request=r, comment="no"),
        "cancel": lambda user, r: services.promotion_cancel(actor=user, request=r),
        "retry": lambda user, r: services.promotion_retry(actor=user, request=r),
        "override_freeze": lambda user, r: services.promotion_override_freeze(actor=user, request=r, reason="x"),
    }
    for action, call in calls.items():
        for user in people:
            promotion = request(p)
            answer = detail(api, user, promotion)["actions"][action]
            try:
                call(user, PromotionRequest.objects.get(pk=promotion.pk))
            except (Conflict, PermissionDenied) as exc:
                assert not answer["allowed"], (action, user.username, exc.message)
                assert answer["reasons"], (action, user.username)
            else:
                assert answer["allowed"], (action, user.username, answer)
            PromotionRequest.objects.filter(pk=promotion.pk).update(state=S.CANCELLED)


# --- self-approval and "awaiting me" ---------------------------------------------------------------------------


def test_self_approval_allowed_by_the_rule_puts_the_request_in_the_requesters_inbox(api, promo):
    p = promo
    set_rule(p, "staging_rule", allow_self_approval=True)
    requester = member(
        p,
        "selfish",
        {"development": [perms.VIEW], "staging": [perms.VIEW, perms.REQUEST_PROMOTION, perms.APPROVE_PROMOTION]},
    )
    promotion = request(p, actor=requester)
    assert services.promotion_actions(requester, promotion)["approve"].allowed
    listed = api(requester).get(PROMOTIONS, {"awaiting_me": "true"}).json()["results"]
    assert [row["id"] for row in listed] == [promotion.pk]
    assert list(selectors.awaiting(requester)) == [promotion]
    # without the rule's permission, their own request is not theirs to approve, nor in their inbox
    set_rule(p, "staging_rule", allow_self_approval=False)
    assert not services.promotion_actions(requester, promotion)["approve"].allowed
    assert api(requester).get(PROMOTIONS, {"awaiting_me": "true"}).json()["results"] == []


def test_awaiting_me_is_exactly_where_approve_is_allowed(api, promo):
    p = promo
    outsider_approver = member(p, "notlisted", {"staging": [perms.VIEW, perms.APPROVE_PROMOTION]})
    set_rule(p, "staging_rule", users=[p["staging_approver"]])
    promotion = request(p)
    for user in (p["staging_approver"], outsider_approver, p["developer"], p["org_admin"]):
        allowed = services.promotion_actions(user, promotion)["approve"].allowed
        assert (promotion in selectors.awaiting(user)) is allowed, user.username
        rows = api(user).get(PROMOTIONS, {"awaiting_me": "true"}).json()["results"]
        assert ([r["id"] for r in rows] == [promotion.pk]) is allowed, user.username
        rows = api(user).get(PROMOTIONS, {"awaiting_me": "false"}).json()["results"]
        assert (promotion.pk in [r["id"] for r in rows]) is (not allowed), user.username
    assert promotion not in selectors.awaiting(outsider_approver)


def test_awaiting_me_costs_the_same_queries_for_one_request_or_many(promo, django_assert_max_num_queries):
    p = promo
    approver = p["staging_approver"]
    request(p)
    perms.forget(approver)
    with django_assert_max_num_queries(12) as one:
        assert len(list(selectors.awaiting(approver))) == 1
    for number in range(2, 7):
        version = new_version(p, f"v{number}")
        run_ok(p, "development", version=version)
        request(p, version=version)
    perms.forget(approver)
    with django_assert_max_num_queries(len(one.captured_queries)):
        assert len(list(selectors.awaiting(approver))) == 6


# --- reject obeys eligibility ------------------------------------------------------------------------------------


def test_reject_obeys_the_rules_approvers_like_approve(api, promo):
    p = promo
    bystander = member(p, "bystander", {"staging": [perms.VIEW, perms.APPROVE_PROMOTION]})
    set_rule(p, "staging_rule", users=[p["staging_approver"]])
    promotion = request(p)
    answer = detail(api, bystander, promotion)["actions"]["reject"]
    assert answer == {"allowed": False, "reasons": ["you are not among rule 'staging review''s approvers"]}
    response = api(bystander).post(f"{PROMOTIONS}{promotion.pk}/reject/", {"comment": "no"}, format="json")
    assert response.status_code == 403, response.content
    assert "not among rule 'staging review''s approvers" in response.json()["error"]["message"]
    assert PromotionRequest.objects.get(pk=promotion.pk).state == S.PENDING
    assert not ApprovalDecision.objects.exists()
    # the rule's approver may
    services.promotion_reject(actor=p["staging_approver"], request=promotion, comment="metrics off")
    assert PromotionRequest.objects.get(pk=promotion.pk).state == S.REJECTED
    # the transition is in the request's history, with who and why
    last = PromotionRequest.history.filter(id=promotion.pk).order_by("-history_date", "-history_id").first()
    assert (last.state, last.history_user, last.history_change_reason) == (
        S.REJECTED,
        p["staging_approver"],
        "rejected: metrics off",
    )


def test_the_requester_cannot_reject_their_own_request_unless_the_rule_allows_self_approval(promo):
    p = promo
    requester = member(
        p,
        "both",
        {"development": [perms.VIEW], "staging": [perms.VIEW, perms.REQUEST_PROMOTION, perms.APPROVE_PROMOTION]},
    )
    promotion = request(p, actor=requester)
    with pytest.raises(PermissionDenied) as err:
        services.promotion_reject(actor=requester, request=promotion, comment="never mind")
    assert "you cannot reject your own request" in err.value.message
    services.promotion_cancel(actor=requester, request=promotion)  # withdrawing is theirs


# --- direct deploys: per project and environment -------------------------------------------------------------


def test_a_projects_rule_blocks_direct_deploys_of_that_project_only(promo):
    p = promo
    other = pipeline_services.project_create(
        actor=p["org_admin"], organization=p["development"].organization, name="Marketing"
    )
    other_pipeline = pipeline_services.pipeline_create(actor=p["org_admin"], project=other, name="Leads")
    other_version = pipeline_services.pipeline_version_create(
        actor=p["org_admin"], pipeline=other_pipeline, graph=GRAPH
    )
    # Only the Sales project's rule covers qa-like "development": the organization has none there.
    services.rule_save(
        actor=p["org_admin"],
        rule=ApprovalRule(environment=p["development"], project=p["project"], name="sales dev review"),
    )
    deployment = run_services.deploy_direct(
        actor=p["org_admin"], pipeline=other_pipeline, environment=p["development"], version=other_version
    )
    assert deployment.is_active and deployment.pipeline == other_pipeline
    with pytest.raises(PermissionDenied) as err:
        run_services.deploy_direct(
            actor=p["org_admin"], pipeline=p["pipeline"], environment=p["development"], version=p["version"]
        )
    assert "approval rules" in err.value.message
    # an organization-wide rule covers every project
    services.rule_save(actor=p["org_admin"], rule=ApprovalRule(environment=p["development"], name="everyone"))
    with pytest.raises(PermissionDenied):
        run_services.deploy_direct(
            actor=p["org_admin"], pipeline=other_pipeline, environment=p["development"], version=other_version
        )


# --- deployments and runs ----------------------------------------------------------------------------------------


def test_rollback_answer_matches_the_service(api, promo):
    p = promo
    (deployment,) = Deployment.objects.filter(environment=p["development"], is_active=True)
    answer = run_services.deployment_actions(p["org_admin"], deployment)["rollback"]
    assert not answer.allowed and answer.reasons == ("There is no earlier deployment to roll back to.",)
    rows = api(p["developer"]).get("/api/v1/deployments/", {"environment": "development"}).json()["results"]
    assert rows[0]["actions"]["rollback"]["allowed"] is False
    response = api(p["org_admin"]).post(f"/api/v1/deployments/{deployment.pk}/rollback/", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "nothing_to_roll_back_to"
    developer_answer = run_services.deployment_actions(p["developer"], deployment)["rollback"]
    assert developer_answer.reasons == ("you lack manage_environment on 'development'",)
