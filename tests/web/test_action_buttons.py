"""The request screen's buttons are promotion_actions' answers (issue 10): a button shown is a button
that works; the decision form carries the plan the page shows, also after a refused approval; the
inbox's "awaiting me" is where approving is allowed."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from apps.approvals import services as approvals
from apps.approvals.models import ApprovalDecision, ApprovalRule, PromotionRequest, PromotionState
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Role
from apps.variables import services as variable_services
from apps.variables.models import Variable

pytestmark = pytest.mark.django_db

User = get_user_model()
PLAN_HASH_INPUT = re.compile(r'name="plan_hash" value="([^"]*)"')


def detail_url(promotion):
    return reverse("web:request-detail", args=[promotion.pk])


def decide_url(promotion):
    return reverse("web:request-decide", args=[promotion.pk])


def staging_rule(w, **fields) -> ApprovalRule:
    rule = ApprovalRule.objects.get(environment=w["staging"], name="staging review")
    users = fields.pop("approver_users", None)
    for name, value in fields.items():
        setattr(rule, name, value)
    return approvals.rule_save(actor=w["org_admin"], rule=rule, approver_users=users)


def staging_member(w, username, *codenames):
    user = User.objects.create_user(username, f"{username}@example.com", "pw")
    tenancy_services.membership_add(actor=w["org_admin"], organization=w["org"], user=user, role=Role.MEMBER)
    for environment in (w["development"], w["staging"]):
        for codename in (perms.VIEW, *codenames):
            env_services.permission_grant(actor=w["org_admin"], environment=environment, codename=codename, user=user)
    perms.forget(user)
    return User.objects.get(pk=user.pk)


def test_after_approving_once_the_page_offers_no_approve(client_for, web, production_request):
    client = client_for(web["prod_approver"])
    data = {"decision": "approve", "plan_hash": production_request.plan_hash}
    assert client.post(decide_url(production_request), data).status_code == 302
    html = client.get(detail_url(production_request)).content.decode()
    assert 'value="approve"' not in html and 'value="reject"' not in html
    assert "You already decided on this plan (approved)." in html
    # the other approver still gets both buttons, and pressing Approve works
    other = client_for(web["prod_approver2"])
    html = other.get(detail_url(production_request)).content.decode()
    assert 'value="approve"' in html and 'value="reject"' in html
    assert other.post(decide_url(production_request), data).status_code == 302
    assert PromotionRequest.objects.get(pk=production_request.pk).state == PromotionState.APPROVED


def test_a_refused_approval_leaves_a_form_with_the_plan_it_now_shows(client_for, web, production_request):
    variable_services.variable_override_set(
        actor=web["org_admin"],
        variable=Variable.objects.get(name="target_table"),
        environment=web["production"],
        value="orders_mart_v2",
    )
    client = client_for(web["prod_approver"])
    shown = production_request.plan_hash
    refused = client.post(decide_url(production_request), {"decision": "approve", "plan_hash": shown})
    assert refused.status_code == 409
    html = refused.content.decode()
    assert "The plan changed" in html and "orders_mart_v2" in html
    current = PromotionRequest.objects.get(pk=production_request.pk).plan_hash
    assert current != shown
    assert PLAN_HASH_INPUT.findall(html) == [current]
    # approving from that page (with what its form carries) now works
    again = client.post(decide_url(production_request), {"decision": "approve", "plan_hash": current})
    assert again.status_code == 302, again.content.decode()[:2000]
    assert ApprovalDecision.objects.get(request=production_request).plan_hash == current


def test_a_request_the_requester_may_approve_is_in_their_inbox(client_for, web):
    staging_rule(web, allow_self_approval=True)
    requester = staging_member(web, "selfie", perms.REQUEST_PROMOTION, perms.APPROVE_PROMOTION)
    promotion, _ = approvals.promotion_request_create(
        actor=requester, pipeline=web["pipeline"], version=web["version"], source=web["development"]
    )
    client = client_for(requester)
    inbox = client.get("/")
    assert [p.pk for p in inbox.context["awaiting"]] == [promotion.pk]
    assert inbox.context["nav"]["awaiting"] == 1
    html = client.get(detail_url(promotion)).content.decode()
    assert 'value="approve"' in html
    assert (
        client.post(decide_url(promotion), {"decision": "approve", "plan_hash": promotion.plan_hash}).status_code == 302
    )
    assert client.get("/").context["awaiting"] == []


def test_the_reject_button_follows_the_rules_approvers(client_for, web, staging_request):
    staging_rule(web, approver_users=[web["staging_approver"]])
    bystander = staging_member(web, "bystander", perms.APPROVE_PROMOTION)
    client = client_for(bystander)
    html = client.get(detail_url(staging_request)).content.decode()
    assert 'value="approve"' not in html and 'value="reject"' not in html
    assert "You are not among rule &#x27;staging review&#x27;&#x27;s approvers." in html
    response = client.post(decide_url(staging_request), {"decision": "reject", "comment": "no", "plan_hash": "x"})
    assert response.status_code == 403
    assert PromotionRequest.objects.get(pk=staging_request.pk).state == PromotionState.PENDING
    html = client_for(web["staging_approver"]).get(detail_url(staging_request)).content.decode()
    assert 'value="approve"' in html and 'value="reject"' in html


def test_the_cancel_button_is_shown_to_whoever_may_cancel(client_for, web, staging_request):
    assert "Cancel this request" in client_for(web["developer"]).get(detail_url(staging_request)).content.decode()
    assert "Cancel this request" in client_for(web["org_admin"]).get(detail_url(staging_request)).content.decode()
    approver = client_for(web["staging_approver"])
    assert "Cancel this request" not in approver.get(detail_url(staging_request)).content.decode()
