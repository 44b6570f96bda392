"""The approvals admin: rules are saved and deleted through services.rule_save/rule_delete (refusals
as form errors); promotion requests are read-mostly (plan, decisions, rule status) with "cancel"
and "retry" actions through the services; staff see only what they may view."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.approvals import services
from apps.approvals.models import ApprovalDecision, ApprovalRule, PromotionRequest, PromotionState
from apps.environments import permissions as perms
from apps.environments import services as env_services
from tests.variables.adminforms import errors_of, login

pytestmark = pytest.mark.django_db

RULES = reverse("admin:approvals_approvalrule_changelist")
RULE_ADD = reverse("admin:approvals_approvalrule_add")
REQUESTS = reverse("admin:approvals_promotionrequest_changelist")
DECISIONS = reverse("admin:approvals_approvaldecision_changelist")


def request_page(promotion):
    return reverse("admin:approvals_promotionrequest_change", args=[promotion.pk])


def rule_page(rule):
    return reverse("admin:approvals_approvalrule_change", args=[rule.pk])


def to_staging(promo, **kwargs):
    """v1 from development to staging, requested by the developer."""
    promotion, _ = services.promotion_request_create(
        actor=promo["developer"],
        pipeline=promo["pipeline"],
        version=promo["version"],
        source=promo["development"],
        reason="ready for staging",
        **kwargs,
    )
    return promotion


def rule_form(environment, project=None, **overrides):
    data = {
        "environment": environment.pk,
        "project": project.pk if project else "",
        "name": "admin rule",
        "is_active": "on",
        "required_approvals": "1",
        "approver_group": "",
        "validation_max_age_hours": "24",
        "allowed_refs": "[]",
        "require_ticket": "",
        "wait_minutes": "0",
        "expires_after_hours": "72",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


@pytest.fixture
def approved(promo):
    """A staging request with one decision: approved by the staging approver."""
    promotion = to_staging(promo)
    return services.promotion_approve(actor=promo["staging_approver"], request=promotion, comment="looks right")


# --- pages ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("who", ["superuser", "org_admin"])
def test_pages_load(request, promo, approved, who):
    client = login(request.getfixturevalue(who))
    rule = promo["production_rule"]
    pipeline = promo["pipeline"]
    for url, params in [
        (RULES, {}),
        (RULES, {"is_active__exact": "1", "environment": promo["staging"].pk}),
        (RULES, {"project": "none", "q": "review"}),
        (RULE_ADD, {}),
        (rule_page(rule), {}),
        (reverse("admin:approvals_approvalrule_history", args=[rule.pk]), {}),
        (REQUESTS, {}),
        (REQUESTS, {"state": "approved", "target": promo["staging"].pk, "pipeline": pipeline.pk}),
        (REQUESTS, {"q": "staging"}),
        (request_page(approved), {}),
        (reverse("admin:approvals_promotionrequest_history", args=[approved.pk]), {}),
        (DECISIONS, {}),
        (reverse("admin:approvals_approvaldecision_change", args=[approved.decisions.get().pk]), {}),
        (reverse("admin:index"), {}),
    ]:
        response = client.get(url, params)
        assert response.status_code == 200, (url, params)
    response = client.get(RULES, {"project": "none"})
    assert response.context["cl"].result_count == 2
    response = client.get(REQUESTS, {"state": "approved", "target": promo["staging"].pk})
    assert [p.pk for p in response.context["cl"].result_list] == [approved.pk]
    page = client.get(request_page(approved)).content.decode()
    # the frozen plan as readable JSON, the decision inline and the rule status
    assert "&quot;config_after&quot;" in page and "&quot;graph_diff&quot;" in page
    assert "looks right" in page and "staging review" in page
    assert "deploy" not in str(client.get(REQUESTS).context["action_form"].fields["action"].choices).lower()


def test_request_list_does_not_query_per_row(promo, org_admin):
    def changelist_queries():
        client = login(org_admin)
        with CaptureQueriesContext(connection) as queries:
            assert client.get(REQUESTS).status_code == 200
        return len(queries)

    first = to_staging(promo)
    services.promotion_cancel(actor=promo["developer"], request=first)
    one = changelist_queries()
    for _ in range(3):
        services.promotion_cancel(actor=promo["developer"], request=to_staging(promo))
    assert PromotionRequest.objects.count() == 4
    assert changelist_queries() == one


# --- rules through the services -------------------------------------------------------------------------


def test_rule_add_goes_through_the_service(promo, org_admin):
    response = login(org_admin).post(
        RULE_ADD,
        rule_form(promo["production"], name="release managers", approver_users=[promo["prod_approver"].pk]),
    )
    assert response.status_code == 302, errors_of(response)
    rule = ApprovalRule.objects.get(name="release managers")
    assert rule.organization == promo["production"].organization and rule.project is None
    assert list(rule.approver_users.all()) == [promo["prod_approver"]]
    assert rule.history.first().history_user == org_admin


def test_loosening_project_rule_is_a_form_error_and_saves_nothing(promo, org_admin):
    before = ApprovalRule.objects.count()
    response = login(org_admin).post(
        RULE_ADD,
        rule_form(promo["production"], project=promo["project"], required_approvals="1", require_validation=None),
    )
    errors = errors_of(response)
    assert "Must be at least 2" in errors and "Must be on, as in the organization's 'production review'" in errors
    form = response.context["adminform"].form
    assert "required_approvals" in form.errors and "require_validation" in form.errors
    assert ApprovalRule.objects.count() == before


def test_tightening_project_rule_is_saved(promo, org_admin):
    response = login(org_admin).post(
        RULE_ADD,
        rule_form(
            promo["production"],
            project=promo["project"],
            name="sales production",
            required_approvals="3",
            require_validation="on",
            validation_max_age_hours="12",
        ),
    )
    assert response.status_code == 302, errors_of(response)
    assert ApprovalRule.objects.get(name="sales production").project == promo["project"]


def test_loosening_change_is_refused(promo, org_admin):
    rule = services.rule_save(
        actor=org_admin,
        rule=ApprovalRule(
            environment=promo["production"],
            project=promo["project"],
            name="sales production",
            required_approvals=2,
            require_validation=True,
        ),
    )
    client = login(org_admin)
    response = client.post(
        rule_page(rule),
        rule_form(promo["production"], project=promo["project"], name="sales production", required_approvals="0"),
    )
    assert "at least 2" in errors_of(response)
    rule.refresh_from_db()
    assert rule.required_approvals == 2 and rule.history.count() == 1


def test_organization_rule_needs_an_organization_admin(promo, org_admin, members):
    developer = members["developer"]
    env_services.permission_grant(actor=org_admin, environment=promo["staging"], codename=perms.MANAGE, user=developer)
    perms.forget(developer)
    client = login(developer)
    response = client.post(RULE_ADD, rule_form(promo["staging"], name="dev's org rule"))
    assert "organization owners and admins" in errors_of(response)
    response = client.post(RULE_ADD, rule_form(promo["staging"], project=promo["project"], name="dev's rule"))
    assert response.status_code == 302, errors_of(response)
    # an organization-wide rule is read-only to them
    assert client.post(rule_page(promo["staging_rule"]), rule_form(promo["staging"], name="x")).status_code == 403
    assert ApprovalRule.objects.filter(name="x").count() == 0


def test_rule_delete_goes_through_the_service(promo, org_admin):
    rule = promo["staging_rule"]
    response = login(org_admin).post(reverse("admin:approvals_approvalrule_delete", args=[rule.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not ApprovalRule.objects.filter(pk=rule.pk).exists()
    assert rule.history.latest().history_user == org_admin


# --- requests: read-mostly, actions through the services ------------------------------------------------


def test_cancel_action_goes_through_the_service(promo, org_admin, approved):
    response = login(org_admin).post(
        REQUESTS, {"action": "cancel_requests", ACTION_CHECKBOX_NAME: [approved.pk]}, follow=True
    )
    assert response.status_code == 200
    texts = [str(m) for m in response.context["messages"]]
    assert any("Cancel: 1 request" in t for t in texts), texts
    approved.refresh_from_db()
    assert approved.state == PromotionState.CANCELLED
    assert approved.history.first().history_user == org_admin
    response = login(org_admin).post(
        REQUESTS, {"action": "cancel_requests", ACTION_CHECKBOX_NAME: [approved.pk]}, follow=True
    )
    assert any("is cancelled" in str(m) for m in response.context["messages"])


def test_retry_action_goes_through_the_service(promo, org_admin, approved):
    PromotionRequest.objects.filter(pk=approved.pk).update(state=PromotionState.FAILED, failure_reason="disk full")
    login(org_admin).post(REQUESTS, {"action": "retry_requests", ACTION_CHECKBOX_NAME: [approved.pk]})
    approved.refresh_from_db()
    assert approved.state == PromotionState.APPROVED and approved.failure_reason == ""


def test_requests_are_read_only(promo, org_admin, approved):
    client = login(org_admin)
    assert client.get(reverse("admin:approvals_promotionrequest_add")).status_code == 403
    client.post(request_page(approved), {"state": "deployed"})
    approved.refresh_from_db()
    assert approved.state == PromotionState.APPROVED
    assert client.get(reverse("admin:approvals_promotionrequest_delete", args=[approved.pk])).status_code == 403
    assert client.get(reverse("admin:approvals_approvaldecision_add")).status_code == 403
    decision = ApprovalDecision.objects.get()
    client.post(reverse("admin:approvals_approvaldecision_change", args=[decision.pk]), {"decision": "reject"})
    assert ApprovalDecision.objects.get().decision == "approve"


def test_outsider_staff_sees_no_requests(promo, approved, outsider):
    client = login(outsider)
    for url in (REQUESTS, RULES, DECISIONS):
        assert client.get(url).status_code == 403
    assert client.get(request_page(approved)).status_code in (302, 403)
    client.post(REQUESTS, {"action": "cancel_requests", ACTION_CHECKBOX_NAME: [approved.pk]})
    approved.refresh_from_db()
    assert approved.state == PromotionState.APPROVED


def test_staff_see_only_requests_into_environments_they_may_view(promo, approved):
    client = login(promo["prod_approver"])  # views production only
    response = client.get(REQUESTS)
    assert response.status_code == 200 and response.context["cl"].result_count == 0
    assert "acme/staging" not in response.content.decode()
    assert client.get(request_page(approved)).status_code in (302, 403)
    response = client.get(RULES)
    assert [r.pk for r in response.context["cl"].result_list] == [promo["production_rule"].pk]
    client.post(REQUESTS, {"action": "cancel_requests", ACTION_CHECKBOX_NAME: [approved.pk]})
    approved.refresh_from_db()
    assert approved.state == PromotionState.APPROVED
