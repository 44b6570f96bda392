"""The frozen plan of a promotion (apps/approvals/services/plan.py): its gates (ticket, validation
run, Git), what it freezes (diff, configuration, readiness, secrets as references only), and
re-freezing it when the configuration changes (earlier approvals no longer count)."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.approvals import services
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState
from apps.core.errors import Conflict, ValidationFailed
from apps.environments import services as env_services
from apps.notifications import services as notification_services
from apps.notifications.models import Delivery, Event, Notification
from apps.runs.models import Deployment, Run
from apps.secrets import services as secret_services
from apps.variables import services as variable_services

from .service_helpers import (
    SECRET_VALUE,
    approve,
    deploy_to_staging,
    execute,
    new_version,
    notified,
    production_request,
    request,
    run_ok,
    set_override,
    set_rule,
)

pytestmark = pytest.mark.django_db

S = PromotionState


# --- requests: where from, where to, who, what --------------------------------------------------------------


def test_the_ticket_gate(promo):
    p = promo
    set_rule(p, "staging_rule", require_ticket=r"^OPS-\d+$")
    for ticket in ("", "ops-1", "OPS-12 and more"):
        with pytest.raises(ValidationFailed) as err:
            request(p, ticket=ticket)
        assert list(err.value.fields) == ["ticket"]
    promotion = request(p, ticket="OPS-12")
    assert {"gate": "ticket", "passed": True}.items() <= promotion.plan["gates"][0].items()


@pytest.mark.parametrize(
    "git",
    [
        {},
        {"git_commit": "abcdef1", "git_branch": "feature/x"},
        {"git_commit": "abcdef1", "git_branch": "main", "git_merged": True},
        {"git_commit": "abcdef1", "git_tag": "v1.2"},
    ],
)
@pytest.mark.parametrize("rule", [{"require_git": True}, {"allowed_refs": ["main", "v*"]}])
def test_hand_made_versions_pass_no_git_gate(promo, git, rule):
    """Typed-in Git fields vouch for nothing: the gates ask the repository (tests/repositories)."""
    p = promo
    set_rule(p, "staging_rule", **rule)
    version = new_version(p, **git)
    run_ok(p, "development", version=version)
    with pytest.raises(ValidationFailed) as err:
        request(p, version=version)
    assert list(err.value.fields) == ["version"]
    assert "not from Git" in err.value.fields["version"][0]


def test_the_validation_gate_wants_a_recent_passing_run_in_the_source(promo):
    p = promo
    deploy_to_staging(p)
    with pytest.raises(ValidationFailed) as err:
        request(p, source="staging")
    assert "version" in err.value.fields
    run = run_ok(p, "staging")
    Run.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(hours=25))
    with pytest.raises(ValidationFailed):
        request(p, source="staging")
    Run.objects.filter(pk=run.pk).update(finished_at=timezone.now(), baseline={"passed": False})
    with pytest.raises(ValidationFailed):
        request(p, source="staging")
    Run.objects.filter(pk=run.pk).update(baseline={"passed": True})
    promotion = request(p, source="staging")
    assert promotion.plan["gates"] == [
        {
            "gate": "validation",
            "rule": "production review",
            "passed": True,
            "run": run.pk,
            "finished_at": promotion.plan["gates"][0]["finished_at"],
            "detail": f"run #{run.pk} passed in staging",
        }
    ]


def test_the_frozen_plan(promo):
    p = promo
    first = request(p)
    plan = first.plan
    assert plan["target"] == "staging" and plan["target_deployed_version"] is None
    assert plan["config_before"] is None
    assert [n["id"] for n in plan["graph_diff"]["nodes_added"]] == ["orders_out", "orders_src"]
    assert {"path": "variables.source_table.value", "before": None, "after": "orders"} in plan["config_diff"]
    assert plan["config_after"]["variables"]["target_table"]["value"] == "orders_mart"
    assert plan["config_after"]["connections"]["warehouse"]["kind"] == "sqlite"
    assert plan["readiness"] == {"ready": True, "problems": []}
    assert plan["version"]["number"] == 1 and first.plan_hash.startswith("sha256:")
    execute(approve(first, p["staging_approver"]))
    # the next version: the diff is against what staging runs now
    set_override(p, "staging", "target_table", "orders_stage")
    v2 = new_version(p)
    run_ok(p, "development", version=v2)
    second = request(p, version=v2)
    plan = second.plan
    assert plan["target_deployed_version"] == 1
    assert list(plan["graph_diff"]["nodes_changed"]) == ["orders_src"]
    assert plan["graph_diff"]["nodes_changed"]["orders_src"]["query"]["after"] == v2.graph["nodes"][0]["query"]
    # "before" is staging as it was when v1 was deployed; the override set since then shows in the diff
    assert plan["config_before"]["variables"]["target_table"] == {
        "value": "orders_mart",
        "source": "default:organization",
        "secret": False,
    }
    assert plan["config_after"]["graph"]["nodes"][1]["table"] == "orders_stage"
    assert plan["config_diff"] == [
        {
            "path": "variables.target_table.source",
            "before": "default:organization",
            "after": "override:organization",
        },
        {"path": "variables.target_table.value", "before": "orders_mart", "after": "orders_stage"},
    ]
    assert second.plan_hash != first.plan_hash


def test_the_plan_reports_readiness_problems_of_the_target(promo):
    p = promo
    variable_services.variable_create(
        actor=p["org_admin"],
        organization=p["project"].organization,
        name="region",
        type="string",
        required_in=["production"],
    )
    promotion = production_request(p)
    readiness = promotion.plan["readiness"]
    assert readiness["ready"] is False
    assert [problem["path"] for problem in readiness["problems"]] == ["variables.region"]


def test_secrets_appear_only_as_references(promo):
    p = promo
    organization = p["project"].organization
    channel, _ = notification_services.channel_create(
        actor=p["org_admin"], organization=organization, name="ops", kind="email", target="ops@example.com"
    )
    for key in ("development", "staging", "production"):
        env_services.runtime_policy_update(actor=p["org_admin"], environment=p[key], notification_channels=[channel])
    secret = secret_services.secret_create(
        actor=p["org_admin"],
        organization=organization,
        name="api_token",
        value=SECRET_VALUE,
        allowed_environments=[p["development"], p["staging"], p["production"]],
    )
    staging_secret = secret_services.secret_create(
        actor=p["org_admin"],
        organization=organization,
        name="staging_token",
        value=SECRET_VALUE + "-staging",
        allowed_environments=[p["staging"]],
    )
    token = variable_services.variable_create(
        actor=p["org_admin"], organization=organization, name="api_token", type="secret", default_secret=secret
    )
    with pytest.raises(ValidationFailed):  # a secret is never interpolated into another variable's value
        variable_services.variable_create(
            actor=p["org_admin"],
            organization=organization,
            name="auth_header",
            type="string",
            default_value="Bearer {{ api_token }}",
        )
    variable_services.variable_override_set(
        actor=p["org_admin"], variable=token, environment=p["staging"], secret=staging_secret
    )
    promotion = request(p)
    promotion = approve(promotion, p["staging_approver"])
    promotion = execute(promotion)
    assert promotion.state == S.DEPLOYED
    run_ok(p, "staging")
    production = request(p, source="staging")
    services.promotion_reject(actor=p["prod_approver"], request=production, comment="not today")

    after = promotion.plan["config_after"]["variables"]
    assert after["api_token"] == {"value": "secret://staging_token", "source": "override:organization", "secret": True}
    dumps = (
        [json.dumps(r.plan) + r.plan_hash for r in PromotionRequest.objects.all()]
        + [json.dumps(row, default=str) for row in PromotionRequest.history.values()]
        + [json.dumps(row, default=str) for row in ApprovalDecision.history.values()]
        + [json.dumps(n.payload) + n.title for n in Notification.objects.all()]
        + [json.dumps(d.payload) for d in Delivery.objects.all()]
    )
    assert Notification.objects.exists() and Delivery.objects.exists()
    for text in dumps:
        assert SECRET_VALUE not in text


# --- decisions --------------------------------------------------------------------------------------------------


def test_a_plan_hash_the_approver_did_not_see_is_a_conflict(promo):
    p = promo
    promotion = request(p)
    with pytest.raises(Conflict) as err:
        services.promotion_approve(actor=p["staging_approver"], request=promotion, plan_hash="sha256:0")
    assert err.value.code == "plan_changed"
    promotion = services.promotion_approve(
        actor=p["staging_approver"], request=promotion, plan_hash=promotion.plan_hash
    )
    assert promotion.state == S.APPROVED


def test_a_configuration_change_invalidates_earlier_approvals(promo):
    p = promo
    promotion = production_request(p)
    old_hash = promotion.plan_hash
    approve(promotion, p["prod_approver"])
    set_override(p, "production", "target_table", "orders_prod")
    # the next approver is told to look again ...
    with pytest.raises(Conflict) as err:
        approve(promotion, p["prod_approver2"])
    assert err.value.code == "plan_changed"
    promotion.refresh_from_db()
    assert promotion.plan_hash != old_hash and promotion.state == S.PENDING
    assert promotion.plan["config_after"]["variables"]["target_table"]["value"] == "orders_prod"
    # ... the earlier approval no longer counts and its author is asked again
    assert services.rule_status(promotion)[0]["approvals"] == 0
    reminders = notified(p["prod_approver"], Event.APPROVAL_REMINDER)
    assert reminders and reminders[0].payload["reason"] == "plan_changed"
    # approving the new plan counts again
    promotion = approve(promotion, p["prod_approver2"])
    assert promotion.state == S.PENDING and services.rule_status(promotion)[0]["approvals"] == 1
    promotion = approve(promotion, p["prod_approver"])
    assert promotion.state == S.APPROVED
    assert ApprovalDecision.objects.filter(request=promotion).count() == 2  # re-deciding replaced the row
    assert ApprovalDecision.history.filter(request_id=promotion.pk).count() == 3


def test_a_change_after_approval_sends_an_approved_request_back_to_pending(promo):
    p = promo
    promotion = approve(production_request(p), p["prod_approver"], p["prod_approver2"])
    assert promotion.state == S.APPROVED
    set_override(p, "production", "target_table", "orders_prod")
    assert services.promotion_execute(promotion.pk) is None
    promotion.refresh_from_db()
    assert promotion.state == S.PENDING and promotion.approved_at is None
    assert not Deployment.objects.filter(environment=p["production"]).exists()
    for approver in (p["prod_approver"], p["prod_approver2"]):
        assert notified(approver, Event.APPROVAL_REMINDER)
    promotion = approve(promotion, p["prod_approver"], p["prod_approver2"])
    assert promotion.state == S.APPROVED
    assert execute(promotion).state == S.DEPLOYED


def test_the_beat_replans_open_requests(promo):
    p = promo
    promotion = approve(production_request(p), p["prod_approver"])
    assert services.promotions_replan() == 0
    set_override(p, "production", "target_table", "orders_prod")
    assert services.promotions_replan() == 1
    assert notified(p["prod_approver"], Event.APPROVAL_REMINDER)
    promotion.refresh_from_db()
    assert services.rule_status(promotion)[0]["approvals"] == 0
    assert approve(promotion, p["prod_approver2"], p["prod_approver"]).state == S.APPROVED


def test_a_new_plan_does_not_reach_back_to_deployed_requests(promo):
    p = promo
    promotion = deploy_to_staging(p)
    set_override(p, "staging", "target_table", "orders_stage")
    assert services.promotions_replan() == 0
    promotion.refresh_from_db()
    assert promotion.state == S.DEPLOYED
