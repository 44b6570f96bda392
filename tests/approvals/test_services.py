"""Promotion services: requests (path, permission, source, gates, plan, secrets, idempotency),
decisions (separation of duties, one decision each, plan-hash invalidation), the state machine, the
deploying worker (wait, freeze and break-glass, readiness, schedules, idempotence), the beat
services (expiry, reminders, watching and automatic rollback), rollback, history and direct deploys.

The worker is `services.promotion_execute`, called directly; on_commit callbacks (task wake-ups)
are captured and not run unless a test says so."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.approvals import services
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState, WatchState
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import FreezeKind
from apps.notifications import services as notification_services
from apps.notifications.models import Delivery, Event, Notification
from apps.runs import services as run_services
from apps.runs.models import Deployment, Run, RunStatus, Schedule
from apps.secrets import services as secret_services
from apps.variables import services as variable_services
from apps.variables.models import Variable

from .service_helpers import (
    approve,
    deploy_to_production,
    deploy_to_staging,
    execute,
    member,
    new_version,
    production_request,
    request,
    run_ok,
)

pytestmark = pytest.mark.django_db

S = PromotionState


def notified(user, event) -> list[Notification]:
    return list(Notification.objects.filter(user=user, event=event))


def set_rule(p, key, **fields):
    rule = p[key]
    for name, value in fields.items():
        setattr(rule, name, value)
    return services.rule_save(actor=p["org_admin"], rule=rule)


def set_override(p, environment_key, name, value):
    variable = Variable.objects.get(name=name, project__isnull=True)
    return variable_services.variable_override_set(
        actor=p["org_admin"], variable=variable, environment=p[environment_key], value=value
    )


@pytest.fixture
def enqueued(monkeypatch):
    """Task wake-ups the services send straight away (the sweeps), recorded instead of sent."""
    calls = []
    monkeypatch.setattr(services.base, "_enqueue", lambda task, args, countdown=None: calls.append((task.name, args)))
    return calls


# --- requests: where from, where to, who, what --------------------------------------------------------------


def test_a_request_follows_the_environment_path(promo):
    p = promo
    with pytest.raises(ValidationFailed) as err:
        request(p, target=p["production"])
    assert "target" in err.value.fields and "staging" in err.value.message
    with pytest.raises(ValidationFailed) as err:
        request(p, source="staging", actor=p["org_admin"], target=p["development"])
    assert "target" in err.value.fields
    assert not PromotionRequest.objects.exists()
    # an administrator's rule may let development promote straight into production
    services.rule_save(actor=p["org_admin"], rule=p["production_rule"], extra_sources=[p["development"]])
    run_ok(p, "development")  # production's rule still wants a validation run in the source
    promotion = request(p, target=p["production"])
    assert (promotion.source, promotion.target, promotion.state) == (p["development"], p["production"], S.PENDING)


def test_the_target_defaults_to_the_next_stage(promo):
    promotion = request(promo)
    assert promotion.target == promo["staging"] and promotion.requested_by == promo["developer"]
    assert promotion.expires_at is not None
    # the people who may approve hear about it, in their inbox; nobody else does
    assert notified(promo["staging_approver"], Event.PROMOTION_REQUESTED)
    assert notified(promo["org_admin"], Event.PROMOTION_REQUESTED)
    assert not notified(promo["prod_approver"], Event.PROMOTION_REQUESTED)
    assert not notified(promo["developer"], Event.PROMOTION_REQUESTED)


def test_requesting_needs_request_promotion_on_the_target(promo, outsider):
    p = promo
    newcomer = member(
        p, "newcomer", {"development": list(perms.DEVELOPMENT_DEFAULTS), "staging": [perms.VIEW, perms.RUN]}
    )
    with pytest.raises(PermissionDenied) as err:
        request(p, actor=newcomer)
    assert "request_promotion" in err.value.message
    with pytest.raises(PermissionDenied):
        request(p, actor=outsider)
    with pytest.raises(PermissionDenied):
        request(p, actor=p["prod_approver"])  # cannot even see development
    assert not PromotionRequest.objects.exists()


def test_only_a_version_deployed_or_successfully_run_in_the_source(promo):
    p = promo
    v2 = new_version(p)
    with pytest.raises(ValidationFailed) as err:
        request(p, version=v2)
    assert "version" in err.value.fields
    failing = run_services.run_create(
        actor=p["org_admin"], pipeline=p["pipeline"], environment=p["development"], version=v2
    )
    Run.objects.filter(pk=failing.pk).update(status=RunStatus.FAILED, finished_at=timezone.now())
    with pytest.raises(ValidationFailed):
        request(p, version=v2)
    run_ok(p, "development", version=v2)
    assert request(p, version=v2).version == v2


def test_an_older_version_than_the_deployed_one_is_refused(promo):
    p = promo
    v2 = new_version(p)
    deploy_to_staging(p, v2)
    with pytest.raises(ValidationFailed) as err:
        request(p)  # v1, still deployed in development
    assert "version" in err.value.fields and "rollback" in err.value.message
    with pytest.raises(ValidationFailed) as err:
        request(p, version=v2)
    assert "already deployed" in err.value.message


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


def test_a_duplicate_open_request_is_a_conflict(promo):
    p = promo
    first = request(p)
    with pytest.raises(Conflict) as err:
        request(p)
    assert err.value.status == 409
    assert PromotionRequest.objects.count() == 1
    services.promotion_cancel(actor=p["developer"], request=first)
    assert request(p).pk != first.pk


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


SECRET_VALUE = "s3cr3t-VALUE-never-shown-9f2c"


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


def test_an_idempotency_key_replays_the_same_request(promo):
    p = promo
    first, created = services.promotion_request_create(
        actor=p["developer"],
        pipeline=p["pipeline"],
        version=p["version"],
        source=p["development"],
        reason="go",
        idempotency_key="key-1",
    )
    assert created
    requested = Notification.objects.filter(event=Event.PROMOTION_REQUESTED).count()
    assert requested == 2  # both staging approvers: the staging approver and the owner
    again, created = services.promotion_request_create(
        actor=p["developer"],
        pipeline=p["pipeline"],
        version=p["version"],
        source=p["development"],
        reason="go",
        idempotency_key="key-1",
    )
    assert not created and again.pk == first.pk
    with pytest.raises(Conflict) as err:
        services.promotion_request_create(
            actor=p["developer"],
            pipeline=p["pipeline"],
            version=p["version"],
            source=p["development"],
            reason="a different body",
            idempotency_key="key-1",
        )
    assert err.value.code == "idempotency_key_reused"
    assert PromotionRequest.objects.count() == 1
    assert Notification.objects.filter(event=Event.PROMOTION_REQUESTED).count() == requested
    # keys are per requester: another person's "key-1" is another request
    v2 = new_version(p)
    run_ok(p, "development", version=v2)
    other, created = services.promotion_request_create(
        actor=p["org_admin"], pipeline=p["pipeline"], version=v2, source=p["development"], idempotency_key="key-1"
    )
    assert created and other.pk != first.pk


# --- decisions --------------------------------------------------------------------------------------------------


def test_the_requester_cannot_approve_their_own_request(promo):
    p = promo
    promotion = request(p, actor=p["org_admin"])  # an owner holds every permission
    with pytest.raises(PermissionDenied) as err:
        services.promotion_approve(actor=p["org_admin"], request=promotion)
    assert "you cannot approve your own request" in err.value.message
    assert "you cannot approve your own request" in services.approval_blockers(p["org_admin"], promotion)
    assert not ApprovalDecision.objects.exists()


def test_an_approver_without_permission_is_refused(promo):
    p = promo
    promotion = production_request(p)
    with pytest.raises(PermissionDenied):
        services.promotion_approve(actor=p["staging_approver"], request=promotion)
    viewer = member(p, "viewer", {"production": [perms.VIEW, perms.REQUEST_PROMOTION]})
    with pytest.raises(PermissionDenied) as err:
        services.promotion_approve(actor=viewer, request=promotion)
    assert "approve_promotion" in err.value.message
    with pytest.raises(PermissionDenied):
        services.promotion_reject(actor=viewer, request=promotion, comment="no")
    assert not ApprovalDecision.objects.filter(request=promotion).exists()
    promotion.refresh_from_db()
    assert promotion.state == S.PENDING


def test_each_approver_decides_once(promo):
    p = promo
    promotion = production_request(p)
    approve(promotion, p["prod_approver"])
    with pytest.raises(Conflict) as err:
        approve(promotion, p["prod_approver"])
    assert err.value.code == "already_decided"
    with pytest.raises(Conflict):
        services.promotion_reject(actor=p["prod_approver"], request=promotion, comment="changed my mind")
    assert ApprovalDecision.objects.filter(request=promotion).count() == 1
    assert services.rule_status(promotion)[0]["approvals"] == 1


def test_a_rejection_needs_a_comment_and_ends_the_request(promo):
    p = promo
    promotion = request(p)
    for comment in ("", "   "):
        with pytest.raises(ValidationFailed) as err:
            services.promotion_reject(actor=p["staging_approver"], request=promotion, comment=comment)
        assert "comment" in err.value.fields
    promotion.refresh_from_db()
    assert promotion.state == S.PENDING
    promotion = services.promotion_reject(actor=p["staging_approver"], request=promotion, comment="wrong table")
    assert promotion.state == S.REJECTED
    decision = ApprovalDecision.objects.get(request=promotion)
    assert (decision.approver, decision.decision, decision.comment) == (p["staging_approver"], "reject", "wrong table")
    assert notified(p["developer"], Event.PROMOTION_REJECTED)
    with pytest.raises(Conflict):
        approve(promotion, p["staging_approver"])


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


# --- the state machine ----------------------------------------------------------------------------------------


def _attempt(p, action, promotion):
    if action == "approve":
        return services.promotion_approve(actor=p["staging_approver"], request=promotion)
    if action == "reject":
        return services.promotion_reject(actor=p["staging_approver"], request=promotion, comment="no")
    if action == "cancel":
        return services.promotion_cancel(actor=p["developer"], request=promotion)
    if action == "retry":
        return services.promotion_retry(actor=p["developer"], request=promotion)
    assert action == "override_freeze"
    return services.promotion_override_freeze(actor=p["org_admin"], request=promotion, reason="outage")


def declared(name):
    """(source states, target) of one of PromotionRequest's transition methods, as django-fsm declares it."""
    transitions = list(PromotionRequest._meta.get_field("state").get_all_transitions(PromotionRequest))
    chosen = [t for t in transitions if t.name == name]
    assert chosen, name
    return [t.source for t in chosen], chosen[0].target


@pytest.mark.parametrize("action", services.PROMOTION_ACTIONS)
def test_every_action_is_refused_from_every_state_it_does_not_start_from(promo, action):
    p = promo
    promotion = request(p)
    allowed, _ = declared(action)
    refused = [state for state in S if state not in allowed]
    assert refused
    for state in refused:
        PromotionRequest.objects.filter(pk=promotion.pk).update(state=state)
        promotion.refresh_from_db()
        answer = services.promotion_actions(p["org_admin"], promotion)[action]
        assert not answer.allowed and answer.reasons == (f"the request is {state.value}",)
        with pytest.raises(Conflict) as err:
            _attempt(p, action, promotion)
        assert err.value.status == 409 and err.value.code == "invalid_state"
        assert f"it is {state.value}" in err.value.message, err.value.message
        assert action.replace("_", " ") in err.value.message
        assert PromotionRequest.objects.get(pk=promotion.pk).state == state
    assert not ApprovalDecision.objects.exists()


@pytest.mark.parametrize("action", services.PROMOTION_ACTIONS)
def test_allowed_transitions_lead_where_they_are_declared(promo, action):
    p = promo
    promotion = request(p)
    allowed, leads_to = declared(action)
    PromotionRequest.objects.filter(pk=promotion.pk).update(state=allowed[-1])
    promotion.refresh_from_db()
    result = _attempt(p, action, promotion)
    assert result.state == (leads_to or allowed[-1])
    assert PromotionRequest.objects.get(pk=promotion.pk).state == result.state


@pytest.mark.parametrize(
    "name", sorted({t.name for t in PromotionRequest._meta.get_field("state").get_all_transitions(PromotionRequest)})
)
def test_worker_side_transitions_refuse_undeclared_states_with_a_409(promo, name):
    p = promo
    promotion = request(p)
    allowed, _ = declared(name)
    for state in [state for state in S if state not in allowed]:
        PromotionRequest.objects.filter(pk=promotion.pk).update(state=state)
        promotion.refresh_from_db()
        with pytest.raises(Conflict) as err:
            services.transition(promotion, name)
        assert err.value.code == "invalid_state" and f"it is {state.value}" in err.value.message


def test_the_state_is_assigned_only_through_transitions(promo):
    promotion = request(promo)
    with pytest.raises(AttributeError):
        promotion.state = S.DEPLOYED
    promotion.refresh_from_db()  # FSMModelMixin: reading the row again still works
    assert promotion.state == S.PENDING


@pytest.mark.parametrize("state", [S.PENDING, S.DEPLOYED, S.ROLLED_BACK, S.REJECTED, S.CANCELLED, S.EXPIRED, S.FAILED])
def test_the_worker_deploys_only_approved_requests(promo, state):
    p = promo
    promotion = request(p)
    PromotionRequest.objects.filter(pk=promotion.pk).update(state=state)
    assert services.promotion_execute(promotion.pk) is None
    promotion.refresh_from_db()
    assert promotion.state == state
    assert not Deployment.objects.filter(environment=p["staging"]).exists()


# --- the deploying worker ---------------------------------------------------------------------------------------


def test_wait_minutes_delay_the_deployment(promo, django_capture_on_commit_callbacks, monkeypatch):
    p = promo
    set_rule(p, "staging_rule", wait_minutes=30)
    promotion = request(p)
    queued = []
    monkeypatch.setattr(
        services.base, "_enqueue", lambda task, args, countdown=None: queued.append((task.name, args, countdown))
    )
    with django_capture_on_commit_callbacks(execute=True):
        promotion = approve(promotion, p["staging_approver"])
    assert promotion.state == S.APPROVED
    assert [(args, countdown) for name, args, countdown in queued if name.endswith("execute_promotion")] == [
        ([promotion.pk], 1800)
    ]
    assert timedelta(minutes=29) < promotion.deploy_after - timezone.now() <= timedelta(minutes=30)
    assert execute(promotion).state == S.APPROVED
    assert not Deployment.objects.filter(environment=p["staging"]).exists()
    PromotionRequest.objects.filter(pk=promotion.pk).update(deploy_after=timezone.now() - timedelta(seconds=1))
    assert execute(promotion).state == S.DEPLOYED


@pytest.fixture
def freeze(promo):
    now = timezone.now()
    return env_services.freeze_window_create(
        actor=promo["org_admin"],
        environment=promo["production"],
        kind=FreezeKind.ONE_OFF,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        reason="quarter close",
    )


def test_a_freeze_window_blocks_and_break_glass_needs_two_managers(promo, freeze, django_capture_on_commit_callbacks):
    p = promo
    manager = member(p, "prodmanager", {"production": [perms.MANAGE]})
    promotion = approve(production_request(p), p["prod_approver"], p["prod_approver2"])
    promotion = execute(promotion)
    assert promotion.state == S.APPROVED and "quarter close" in promotion.blocked_reason
    assert not Deployment.objects.filter(environment=p["production"]).exists()
    # only managers, only with a reason
    with pytest.raises(PermissionDenied):
        services.promotion_override_freeze(actor=p["prod_approver"], request=promotion, reason="outage")
    with pytest.raises(ValidationFailed) as err:
        services.promotion_override_freeze(actor=p["org_admin"], request=promotion, reason=" ")
    assert "reason" in err.value.fields
    promotion = services.promotion_override_freeze(actor=p["org_admin"], request=promotion, reason="outage fix")
    assert promotion.freeze_override_requested_by == p["org_admin"] and not promotion.freeze_override_confirmed_by
    assert notified(manager, Event.FREEZE_OVERRIDDEN)[0].payload["stage"] == "asked"
    assert execute(promotion).state == S.APPROVED  # one person is not enough
    with pytest.raises(PermissionDenied) as err:
        services.promotion_override_freeze(actor=p["org_admin"], request=promotion, reason="really")
    assert err.value.code == "second_person_required"
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        promotion = services.promotion_override_freeze(actor=manager, request=promotion, reason="confirmed")
    assert promotion.freeze_override_confirmed_by == manager and promotion.blocked_reason == ""
    assert callbacks  # the deployment is queued
    with pytest.raises(Conflict):
        services.promotion_override_freeze(actor=p["org_admin"], request=promotion, reason="again")
    promotion = execute(promotion)
    assert promotion.state == S.DEPLOYED
    confirmed = notified(p["developer"], Event.FREEZE_OVERRIDDEN)
    assert confirmed and confirmed[0].payload["confirmed_by"] == manager.username
    history = {h.history_change_reason: h.history_user for h in promotion.history.all()}
    assert history["freeze override asked: outage fix"] == p["org_admin"]
    assert history["freeze override confirmed: confirmed"] == manager


def test_a_request_blocked_by_a_freeze_deploys_once_the_window_ends(promo, freeze):
    p = promo
    promotion = execute(approve(production_request(p), p["prod_approver"], p["prod_approver2"]))
    assert promotion.blocked_reason
    env_services.freeze_window_delete(actor=p["org_admin"], window=freeze)
    promotion = execute(promotion)
    assert promotion.state == S.DEPLOYED and promotion.blocked_reason == ""


def test_readiness_failure_fails_and_a_retry_deploys_after_the_fix(promo):
    p = promo
    organization = p["project"].organization
    secret = secret_services.secret_create(
        actor=p["org_admin"],
        organization=organization,
        name="api_token",
        value=SECRET_VALUE,
        allowed_environments=[p["development"], p["staging"]],
    )
    variable_services.variable_create(
        actor=p["org_admin"], organization=organization, name="api_token", type="secret", default_secret=secret
    )
    promotion = approve(production_request(p), p["prod_approver"], p["prod_approver2"])
    assert promotion.plan["readiness"]["ready"] is False
    promotion = execute(promotion)
    assert promotion.state == S.FAILED
    assert "not ready" in promotion.failure_reason and "api_token" in promotion.failure_reason
    assert notified(p["developer"], Event.PROMOTION_FAILED)
    with pytest.raises(PermissionDenied):
        services.promotion_retry(actor=p["prod_approver"], request=promotion)
    # fix: allow the secret in production (the plan hash covers the reference, not the value)
    secret_services.secret_update(
        actor=p["org_admin"], secret=secret, allowed_environments=[p["development"], p["staging"], p["production"]]
    )
    promotion = services.promotion_retry(actor=p["developer"], request=promotion)
    assert promotion.state == S.APPROVED and promotion.failure_reason == ""
    promotion = execute(promotion)
    assert promotion.state == S.DEPLOYED, promotion.failure_reason
    assert promotion.plan["readiness"]["ready"] is True


def test_a_readiness_fix_that_changes_the_configuration_needs_new_approvals(promo):
    p = promo
    region = variable_services.variable_create(
        actor=p["org_admin"],
        organization=p["project"].organization,
        name="region",
        type="string",
        required_in=["production"],
    )
    promotion = execute(approve(production_request(p), p["prod_approver"], p["prod_approver2"]))
    assert promotion.state == S.FAILED and "region" in promotion.failure_reason
    variable_services.variable_override_set(
        actor=p["org_admin"], variable=region, environment=p["production"], value="eu"
    )
    promotion = execute(services.promotion_retry(actor=p["developer"], request=promotion))
    assert promotion.state == S.PENDING  # approvers approve what will really deploy
    promotion = execute(approve(promotion, p["prod_approver"], p["prod_approver2"]))
    assert promotion.state == S.DEPLOYED


def test_deploying_switches_the_target_schedules_on(promo):
    p = promo
    schedule = run_services.schedule_save(
        actor=p["org_admin"], pipeline=p["pipeline"], environment=p["staging"], cron="0 * * * *"
    )
    assert schedule.enabled is False
    promotion = deploy_to_staging(p)
    schedule.refresh_from_db()
    assert schedule.enabled is True
    assert Schedule.history.filter(id=schedule.pk).first().history_change_reason.startswith("switched on")
    deployment = Deployment.objects.get(promotion_request_id=promotion.pk)
    assert promotion.deployment == deployment and deployment.is_active and deployment.version == p["version"]
    assert notified(p["developer"], Event.PROMOTION_DEPLOYED)
    assert notified(p["staging_approver"], Event.PROMOTION_DEPLOYED)


def test_executing_twice_deploys_once(promo):
    p = promo
    promotion = approve(request(p), p["staging_approver"])
    first = services.promotion_execute(promotion.pk)
    second = services.promotion_execute(promotion.pk)
    assert first.state == S.DEPLOYED and second is None
    assert Deployment.objects.filter(environment=p["staging"]).count() == 1
    promotion.refresh_from_db()
    assert promotion.attempts == 1


def test_a_worker_that_died_while_deploying_is_taken_over_once(promo):
    p = promo
    promotion = approve(request(p), p["staging_approver"])
    started = services._prepare(promotion.pk, timezone.now())  # the first worker dies after this step
    assert started.state == S.DEPLOYING
    assert services.promotion_execute(promotion.pk) is None  # its lease still holds
    PromotionRequest.objects.filter(pk=promotion.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert services.promotion_execute(promotion.pk).state == S.DEPLOYED
    assert services._finish(started) is None  # the late first worker does nothing
    assert Deployment.objects.filter(environment=p["staging"]).count() == 1


def test_one_promotion_deploys_per_pipeline_and_environment_at_a_time(promo):
    p = promo
    first = approve(request(p), p["staging_approver"])
    v2 = new_version(p)
    run_ok(p, "development", version=v2)
    second = approve(request(p, version=v2), p["staging_approver"])
    later = timezone.now() + timedelta(minutes=5)
    PromotionRequest.objects.filter(pk=first.pk).update(state=S.DEPLOYING, lease_expires_at=later)
    assert services.promotion_execute(second.pk) is None
    second.refresh_from_db()
    assert second.state == S.APPROVED and second.attempts == 0
    assert "another promotion" in second.blocked_reason
    assert not Deployment.objects.filter(environment=p["staging"]).exists()
    PromotionRequest.objects.filter(pk=first.pk).update(state=S.CANCELLED, lease_expires_at=None)
    assert execute(second).state == S.DEPLOYED


def test_an_approved_older_version_fails_once_a_newer_one_is_deployed(promo):
    p = promo
    older = approve(request(p), p["staging_approver"])
    v2 = new_version(p)
    deploy_to_staging(p, v2)
    older = execute(older)
    assert older.state == S.FAILED and "v2 is already deployed" in older.failure_reason
    assert Deployment.objects.get(environment=p["staging"], is_active=True).version == v2


# --- beat: expiry, outbox sweep, reminders -----------------------------------------------------------------


def test_pending_requests_expire_in_the_sweep(promo, enqueued):
    p = promo
    set_rule(p, "staging_rule", expires_after_hours=2)
    promotion = request(p)
    assert services.promotions_sweep(now=timezone.now() + timedelta(hours=1))["expired"] == 0
    result = services.promotions_sweep(now=timezone.now() + timedelta(hours=2, minutes=1))
    assert result["expired"] == 1
    promotion.refresh_from_db()
    assert promotion.state == S.EXPIRED
    assert notified(p["developer"], Event.PROMOTION_EXPIRED)
    assert promotion.history.first().history_change_reason == "expired"
    with pytest.raises(Conflict):
        approve(promotion, p["staging_approver"])


def test_a_rule_with_no_expiry_keeps_requests_open(promo, enqueued):
    p = promo
    set_rule(p, "staging_rule", expires_after_hours=0)
    promotion = request(p)
    assert promotion.expires_at is None
    services.promotions_sweep(now=timezone.now() + timedelta(days=365))
    promotion.refresh_from_db()
    assert promotion.state == S.PENDING


def test_the_sweep_requeues_approved_requests_left_behind(promo, enqueued):
    p = promo
    promotion = approve(request(p), p["staging_approver"])  # its wake-up was never sent (no commit)
    assert services.promotions_sweep()["requeued"] == 0  # within the grace period
    result = services.promotions_sweep(now=timezone.now() + timedelta(minutes=5))
    assert result["requeued"] == 1
    assert enqueued == [("apps.approvals.tasks.execute_promotion", [promotion.pk])]


def test_approvers_are_reminded_of_pending_requests(promo):
    p = promo
    promotion = production_request(p)
    approve(promotion, p["prod_approver"])
    assert services.promotions_remind() == 0  # too fresh
    later = timezone.now() + timedelta(hours=25)
    assert services.promotions_remind(now=later) == 1
    assert notified(p["prod_approver2"], Event.APPROVAL_REMINDER)
    assert not notified(p["prod_approver"], Event.APPROVAL_REMINDER)  # already decided
    assert not notified(p["developer"], Event.APPROVAL_REMINDER)  # the requester
    assert services.promotions_remind(now=later + timedelta(hours=1)) == 0  # not again so soon
    assert services.promotions_remind(now=later + timedelta(hours=25)) == 1


# --- watching, automatic rollback, rollback --------------------------------------------------------------------


def _watch_production(p, *, auto_rollback=True):
    env_services.runtime_policy_update(
        actor=p["org_admin"], environment=p["production"], watch_first_runs=1, auto_rollback_on_failure=auto_rollback
    )


def _failing_production_run(p):
    set_override(p, "production", "source_table", "no_such_table")
    run = run_services.run_create(actor=p["org_admin"], pipeline=p["pipeline"], environment=p["production"])
    run_services.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    return run


def test_a_failing_first_run_rolls_back_automatically(promo):
    p = promo
    _watch_production(p)
    first = deploy_to_production(p)
    assert first.watch_state == WatchState.WATCHING
    run_ok(p, "production")
    assert services.promotions_watch() == {"passed": 1, "rolled_back": 0}
    v2 = new_version(p)
    second = deploy_to_production(p, v2)
    assert second.watch_state == WatchState.WATCHING
    failed_run = _failing_production_run(p)
    assert failed_run.version == v2 and failed_run.deployment == second.deployment
    assert services.promotions_watch() == {"passed": 0, "rolled_back": 1}
    second.refresh_from_db()
    assert second.state == S.ROLLED_BACK and second.watch_state == WatchState.ROLLED_BACK
    active = Deployment.objects.get(environment=p["production"], is_active=True)
    assert active.version == p["version"] and active.pk not in (first.deployment_id, second.deployment_id)
    assert active.previous_id == second.deployment_id and "rollback of v2 to v1" in active.note
    failed = notified(p["developer"], Event.PROMOTION_FAILED)
    assert failed and failed[0].payload["rolled_back_runs"] == [failed_run.pk]
    assert services.promotions_watch() == {"passed": 0, "rolled_back": 0}


def test_a_failing_run_without_auto_rollback_only_ends_the_watch(promo):
    p = promo
    _watch_production(p, auto_rollback=False)
    deploy_to_production(p)
    v2 = new_version(p)
    second = deploy_to_production(p, v2)
    _failing_production_run(p)
    assert services.promotions_watch() == {"passed": 0, "rolled_back": 0}
    second.refresh_from_db()
    assert second.state == S.DEPLOYED and second.watch_state == WatchState.NONE
    assert Deployment.objects.get(environment=p["production"], is_active=True).version == v2


def test_a_failing_first_deployment_has_nothing_to_roll_back_to(promo):
    """The first deployment into a stage has no previous version: the watch ends instead of
    failing the beat task on every tick (and starving every other watched request)."""
    p = promo
    _watch_production(p)
    promotion = deploy_to_production(p)
    _failing_production_run(p)
    assert services.promotions_watch() == {"passed": 0, "rolled_back": 0}
    promotion.refresh_from_db()
    assert promotion.state == S.DEPLOYED and promotion.watch_state == WatchState.NONE
    assert Deployment.objects.get(environment=p["production"], is_active=True) == promotion.deployment


def test_rollback_needs_manage_environment_and_lists_the_runs_written(promo):
    p = promo
    first = deploy_to_staging(p)
    v2 = new_version(p)
    second = deploy_to_staging(p, v2)
    written = [run_ok(p, "staging", version=v2), run_ok(p, "staging", version=v2)]
    for user in (p["staging_approver"], p["developer"], p["prod_approver"]):
        with pytest.raises(PermissionDenied):
            services.deployment_rollback(actor=user, deployment=second.deployment)
    new, runs = services.deployment_rollback(actor=p["org_admin"], deployment=second.deployment, reason="bad join")
    assert [r.pk for r in runs] == [r.pk for r in written]
    assert new.version == p["version"] and new.is_active and new.deployed_by == p["org_admin"]
    assert "bad join" in new.note
    second.refresh_from_db()
    assert second.state == S.ROLLED_BACK
    history = second.history.first()
    assert history.history_user == p["org_admin"] and history.state == S.ROLLED_BACK
    first.refresh_from_db()
    assert first.state == S.DEPLOYED  # the request that deployed v1 is not touched
    with pytest.raises(Conflict):
        services.deployment_rollback(actor=p["org_admin"], deployment=second.deployment)
    assert services.runs_written_by(second.deployment) == runs


def test_the_first_deployment_cannot_be_rolled_back(promo):
    p = promo
    promotion = deploy_to_staging(p)
    with pytest.raises(Conflict) as err:
        services.deployment_rollback(actor=p["org_admin"], deployment=promotion.deployment)
    assert err.value.code == "nothing_to_roll_back_to"


# --- history -----------------------------------------------------------------------------------------------------


def test_every_decision_and_transition_is_in_the_history_with_the_acting_user(promo):
    p = promo
    promotion = production_request(p)
    approve(promotion, p["prod_approver"], p["prod_approver2"])
    promotion = execute(promotion)
    rows = list(promotion.history.order_by("history_date", "history_id"))
    steps = [(row.state, row.history_user, row.history_change_reason) for row in rows]
    assert steps[0] == (S.PENDING, p["developer"], "requested")
    assert (S.APPROVED, p["prod_approver2"], "approved: every rule is met") in steps
    assert [state for state, _, _ in steps][-2:] == [S.DEPLOYING, S.DEPLOYED]
    decisions = ApprovalDecision.history.filter(request_id=promotion.pk).order_by("history_date")
    assert [(d.approver_id, d.history_user, d.decision) for d in decisions] == [
        (p["prod_approver"].pk, p["prod_approver"], "approve"),
        (p["prod_approver2"].pk, p["prod_approver2"], "approve"),
    ]
    # cancel, reject and retry are recorded with whoever did them
    v2 = new_version(p)
    run_ok(p, "development", version=v2)
    cancelled = services.promotion_cancel(actor=p["org_admin"], request=request(p, version=v2))
    assert (cancelled.history.first().history_user, cancelled.history.first().state) == (p["org_admin"], S.CANCELLED)
    rejected = services.promotion_reject(actor=p["staging_approver"], request=request(p, version=v2), comment="no")
    row = rejected.history.first()
    assert (row.history_user, row.state, row.history_change_reason) == (
        p["staging_approver"],
        S.REJECTED,
        "rejected: no",
    )
    decision = ApprovalDecision.history.filter(request_id=rejected.pk).get()
    assert (decision.history_user, decision.decision, decision.comment) == (p["staging_approver"], "reject", "no")
    PromotionRequest.objects.filter(pk=rejected.pk).update(state=S.FAILED)
    retried = services.promotion_retry(actor=p["developer"], request=rejected)
    assert (retried.history.first().history_user, retried.history.first().state) == (p["developer"], S.APPROVED)


def test_cancel_is_for_the_requester_or_a_manager(promo):
    p = promo
    promotion = request(p)
    with pytest.raises(PermissionDenied):
        services.promotion_cancel(actor=p["staging_approver"], request=promotion)
    promotion = services.promotion_cancel(actor=p["developer"], request=promotion, comment="not needed")
    assert promotion.state == S.CANCELLED
    assert promotion.history.first().history_change_reason == "cancelled: not needed"


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


# --- bad input, editions, bookkeeping ---------------------------------------------------------------------------


def test_bad_request_input_is_refused_naming_the_field(promo):
    p = promo
    from apps.pipelines import services as pipeline_services

    other = pipeline_services.pipeline_create(actor=p["org_admin"], project=p["project"], name="Other")
    pipeline_services.pipeline_version_create(actor=p["org_admin"], pipeline=other, graph=p["version"].graph)
    foreign_run = run_services.run_create(actor=p["org_admin"], pipeline=other, environment=p["development"])
    cases = [
        ({"reason": "x" * 4001}, "reason"),
        ({"ticket": "T" * 101}, "ticket"),
        ({"compare_url": "not a url"}, "compare_url"),
        ({"attached_runs": [foreign_run]}, "attached_runs"),
        ({"version": other.versions.get()}, "version"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationFailed) as err:
            request(p, **kwargs)
        assert field in err.value.fields, (field, err.value.fields)
    assert not PromotionRequest.objects.exists()
    attached = run_ok(p, "development")
    promotion = request(p, reason="x" * 4000, attached_runs=[attached], compare_url="https://git.example.com/c/1")
    assert list(promotion.attached_runs.all()) == [attached]


def test_overlong_decision_texts_are_refused_naming_the_field(promo, freeze):
    p = promo
    promotion = production_request(p)
    with pytest.raises(ValidationFailed) as err:
        services.promotion_approve(actor=p["prod_approver"], request=promotion, comment="x" * 4001)
    assert "comment" in err.value.fields
    with pytest.raises(ValidationFailed) as err:
        services.promotion_reject(actor=p["prod_approver"], request=promotion, comment="x" * 4001)
    assert "comment" in err.value.fields
    with pytest.raises(ValidationFailed) as err:
        services.promotion_override_freeze(actor=p["org_admin"], request=promotion, reason="x" * 501)
    assert "reason" in err.value.fields
    promotion.refresh_from_db()
    assert promotion.state == S.PENDING and not promotion.freeze_override_requested_by
    assert not ApprovalDecision.objects.filter(request=promotion).exists()


def test_promotions_need_the_enterprise_edition(platform_staff, org_admin):
    from apps.environments.models import Environment
    from apps.pipelines import services as pipeline_services
    from apps.tenancy import services as tenancy_services
    from apps.tenancy.models import Edition
    from tests.runs.conftest import GRAPH

    small = tenancy_services.organization_create(
        actor=platform_staff, name="Small", slug="small", edition=Edition.STANDARD, owner=org_admin
    )
    only = Environment.objects.get(organization=small)
    project = pipeline_services.project_create(actor=org_admin, organization=small, name="Solo")
    pipeline = pipeline_services.pipeline_create(actor=org_admin, project=project, name="Orders")
    version = pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=GRAPH)
    run_services.deploy_direct(actor=org_admin, pipeline=pipeline, environment=only, version=version)
    with pytest.raises((PermissionDenied, ValidationFailed)) as err:
        services.promotion_request_create(actor=org_admin, pipeline=pipeline, version=version, source=only)
    assert "edition" in err.value.message
    assert not PromotionRequest.objects.exists()


def test_reminders_are_bookkeeping_not_history(promo):
    p = promo
    promotion = request(p)
    rows = promotion.history.count()
    assert services.promotions_remind(now=timezone.now() + timedelta(hours=25)) == 1
    promotion.refresh_from_db()
    assert promotion.last_reminded_at is not None
    assert promotion.history.count() == rows


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


def test_retry_refused_while_a_newer_request_promotes_the_same_version(promo):
    """A failed request cannot come back while another open request promotes the same version
    (one open request per version: a database constraint, said here with a clear message)."""
    p = promo
    failed = request(p)
    PromotionRequest.objects.filter(pk=failed.pk).update(state=S.FAILED)
    failed.refresh_from_db()
    newer = request(p)
    with pytest.raises(Conflict) as err:
        services.promotion_retry(actor=p["developer"], request=failed)
    assert f"#{newer.pk}" in err.value.message and err.value.code == "duplicate_request"
    assert PromotionRequest.objects.get(pk=failed.pk).state == "failed"
