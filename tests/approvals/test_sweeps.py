"""The beat services of promotions (apps/approvals/services/workflow.py): expiry, the outbox sweep,
reminders (bookkeeping, not history), watching the first runs after a deploy with automatic rollback,
and rollback itself (runs' deployment_rollback, to which approvals reacts)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.approvals import services
from apps.approvals.models import PromotionState, WatchState
from apps.core.errors import Conflict, PermissionDenied
from apps.environments import services as env_services
from apps.notifications.models import Event
from apps.runs import services as run_services
from apps.runs.models import Deployment, RunStatus

from .service_helpers import (
    approve,
    deploy_to_production,
    deploy_to_staging,
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


# --- bad input, editions, bookkeeping ---------------------------------------------------------------------------


def test_reminders_are_bookkeeping_not_history(promo):
    p = promo
    promotion = request(p)
    rows = promotion.history.count()
    assert services.promotions_remind(now=timezone.now() + timedelta(hours=25)) == 1
    promotion.refresh_from_db()
    assert promotion.last_reminded_at is not None
    assert promotion.history.count() == rows
