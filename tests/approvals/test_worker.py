"""The deploying worker (`services.promotion_execute`, apps/approvals/services/workflow.py), called
directly: wait minutes, freeze windows and break-glass, readiness failures and retries, switching the
target's schedules on, and deploying at most once.

On_commit callbacks (task wake-ups) are captured and not run unless a test says so."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.approvals import services
from apps.approvals.models import PromotionRequest, PromotionState
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.notifications.models import Event
from apps.runs import services as run_services
from apps.runs.models import Deployment, Schedule
from apps.secrets import services as secret_services
from apps.variables import services as variable_services

from .service_helpers import (
    SECRET_VALUE,
    approve,
    deploy_to_staging,
    execute,
    member,
    new_version,
    notified,
    production_request,
    request,
    run_ok,
    set_rule,
)

pytestmark = pytest.mark.django_db

S = PromotionState


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
