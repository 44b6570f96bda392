"""Promotions end to end with a real Celery worker on the configured broker (Redis in CI, the
filesystem transport locally): development → staging → production with two approvals, schedules
switched on and notifications delivered; and the outbox guarantees of DESIGN.md §8.3 — a worker
killed in the middle of execute_promotion, a broker that is down when the last approval lands and a
duplicated execute message all end with exactly one deployment."""

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from contextlib import contextmanager
from datetime import timedelta
from urllib.parse import quote

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError as BrokerUnavailable

from apps.approvals import services
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState
from apps.approvals.tasks import execute_promotion, sweep_promotions
from apps.environments import services as env_services
from apps.notifications import services as notification_services
from apps.notifications.models import ChannelKind, Delivery, DeliveryStatus, Event, Notification
from apps.runs import services as run_services
from apps.runs.models import TERMINAL, Deployment, Run, RunStatus
from planasonix_env.celery import app as celery_app
from tests.notifications.conftest import Receiver

from .workflow_support import (
    EXECUTE,
    TaskLog,
    describe_request,
    execute_messages_held,
    poll,
    request_production,
    stage_for_production,
    wait_until_settled,
)

pytestmark = [pytest.mark.workflow, pytest.mark.django_db(transaction=True)]

S = PromotionState
DEAD_BROKER_URL = "redis://127.0.0.1:1/0"  # nobody listens on port 1: connection refused at once


@pytest.fixture
def receiver(allow_loopback):
    """A webhook receiver on 127.0.0.1, reachable because the operator allow-lists loopback."""
    r = Receiver().start()
    yield r
    r.stop()


def inbox(user, request: PromotionRequest) -> list[str]:
    """The events in `user`'s in-app inbox about `request`."""
    return sorted(Notification.objects.filter(user=user, payload__promotion=request.pk).values_list("event", flat=True))


def wait_for_run(pk: int) -> Run:
    run = poll(
        lambda: Run.objects.filter(pk=pk, status__in=TERMINAL).first(),
        describe=lambda: f"run {pk} is {Run.objects.get(pk=pk).status}",
    )
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


# --- development → staging → production ---------------------------------------------------------


def test_two_approvals_deploy_to_production_once_with_schedules_on_and_notifications_delivered(
    promo, receiver, celery_worker_thread
):
    p = promo
    developer, production, org_admin = p["developer"], p["production"], p["org_admin"]
    channel, secret = notification_services.channel_create(
        actor=org_admin,
        organization=production.organization,
        name="production hooks",
        kind=ChannelKind.WEBHOOK,
        target=f"{receiver.url}/hooks/production",
    )
    receiver.secret = secret
    env_services.runtime_policy_update(actor=org_admin, environment=production, notification_channels=[channel])
    schedule = run_services.schedule_save(
        actor=org_admin, pipeline=p["pipeline"], environment=production, cron="*/5 * * * *"
    )
    assert schedule.enabled is False  # nothing deployed in production yet

    # development → staging: one approval, then the worker deploys.
    to_staging, created = services.promotion_request_create(
        actor=developer, pipeline=p["pipeline"], version=p["version"], source=p["development"], reason="ready"
    )
    assert created and to_staging.target == p["staging"] and to_staging.state == S.PENDING
    services.promotion_approve(actor=p["staging_approver"], request=to_staging, comment="fine")
    to_staging = wait_until_settled(to_staging.pk)
    assert to_staging.state == S.DEPLOYED, to_staging.failure_reason

    # Validation: a real staging run by the worker (production's rule requires a passing one).
    wait_for_run(run_services.run_create(actor=org_admin, pipeline=p["pipeline"], environment=p["staging"]).pk)

    # staging → production: two approvals, then the worker deploys.
    to_production, created = services.promotion_request_create(
        actor=developer, pipeline=p["pipeline"], version=p["version"], source=p["staging"], reason="release"
    )
    assert created and to_production.target == production
    assert [g["gate"] for g in to_production.plan["gates"] if g["passed"]] == ["validation"]
    services.promotion_approve(actor=p["prod_approver"], request=to_production, comment="ok")
    assert PromotionRequest.objects.get(pk=to_production.pk).state == S.PENDING  # one of two
    services.promotion_approve(actor=p["prod_approver2"], request=to_production, comment="ok too")
    to_production = wait_until_settled(to_production.pk)

    assert to_production.state == S.DEPLOYED, to_production.failure_reason
    assert to_production.attempts == 1 and to_production.deployed_at and to_production.lease_expires_at is None
    (deployment,) = Deployment.objects.filter(environment=production)
    assert deployment.pk == to_production.deployment_id and deployment.promotion_request_id == to_production.pk
    assert deployment.version == p["version"] and deployment.is_active and deployment.deployed_by == developer
    assert Deployment.objects.filter(environment=p["staging"], promotion_request_id=to_staging.pk).count() == 1
    schedule.refresh_from_db()
    assert schedule.enabled is True

    # In-app: the requester hears of the approval and the deployment, the approvers of the request
    # and the deployment; once each.
    assert inbox(developer, to_production) == [Event.PROMOTION_APPROVED, Event.PROMOTION_DEPLOYED]
    for approver in (p["prod_approver"], p["prod_approver2"]):
        assert inbox(approver, to_production) == [Event.PROMOTION_DEPLOYED, Event.PROMOTION_REQUESTED]
    assert inbox(p["staging_approver"], to_production) == []

    # The production policy's webhook: requested, approved and deployed, each signed and received.
    expected = sorted([Event.PROMOTION_REQUESTED, Event.PROMOTION_APPROVED, Event.PROMOTION_DEPLOYED])
    received = poll(
        lambda: len(receiver.received()) >= 3 and receiver.received(),
        describe=lambda: f"the receiver got {[r['headers'].get('x-planasonix-event') for r in receiver.received()]}",
    )
    assert sorted(r["headers"]["x-planasonix-event"] for r in received) == expected
    assert all(r["verified"] and r["status"] == 200 and r["path"] == "/hooks/production" for r in received)
    (deployed_hook,) = [r for r in received if r["headers"]["x-planasonix-event"] == Event.PROMOTION_DEPLOYED]
    assert deployed_hook["json"]["payload"]["promotion"] == to_production.pk
    assert deployed_hook["json"]["payload"]["deployment"] == deployment.pk
    assert deployed_hook["json"]["payload"]["environment"]["slug"] == production.slug
    deliveries = poll(
        lambda: (
            not Delivery.objects.filter(channel=channel).exclude(status=DeliveryStatus.SUCCEEDED).exists()
            and list(Delivery.objects.filter(channel=channel))
        ),
        describe=lambda: str(list(Delivery.objects.filter(channel=channel).values_list("event", "status"))),
    )
    assert sorted(d.event for d in deliveries) == expected
    assert sorted(str(d.delivery_id) for d in deliveries) == sorted(r["delivery"] for r in received)


# --- a worker killed in the middle of execute_promotion ---------------------------------------------

KILLED_WORKER = textwrap.dedent(
    """
    import os, signal, sys

    import django

    django.setup()

    import planasonix_env.celery  # noqa: F401  (the worker's app)
    from apps.approvals.models import PromotionRequest
    from apps.approvals.tasks import execute_promotion
    from apps.runs import services as run_services

    def die(**kwargs):
        state = PromotionRequest.objects.get(pk=kwargs["promotion_request_id"]).state
        print("deploying" if state == "deploying" else "unexpected " + state, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

    run_services.deploy = die
    execute_promotion(int(sys.argv[1]))
    print("survived", flush=True)
    """
)


def _database_url() -> str:
    """The test database, for another process."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor != "postgresql":
        pytest.skip(f"the killed-worker process cannot share a {connection.vendor} test database")
    credentials = quote(db["USER"] or "", safe="") + (f":{quote(db['PASSWORD'], safe='')}" if db["PASSWORD"] else "")
    return f"postgres://{credentials}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{quote(db['NAME'], safe='')}"


def test_a_worker_killed_while_deploying_leaves_the_request_deploying_and_the_sweep_deploys_it_once(
    promo, celery_worker_thread
):
    p = promo
    stage_for_production(p)
    request = request_production(p)
    with execute_messages_held() as held:  # the message goes to the worker that is about to die
        services.promotion_approve(actor=p["prod_approver"], request=request)
        services.promotion_approve(actor=p["prod_approver2"], request=request)
    assert held == [request.pk]
    assert PromotionRequest.objects.get(pk=request.pk).state == S.APPROVED

    # A separate worker process runs execute_promotion and is SIGKILLed inside deploy(), after
    # the request went deploying and before the deployment committed.
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "planasonix_env.test_settings",
        "DATABASE_URL": _database_url(),
        "SQLITE_CONNECTION_ROOT": django_settings.SQLITE_CONNECTION_ROOT,  # where this test's bindings point
    }
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_WORKER, str(request.pk)],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
    assert killed.stdout.split() == ["deploying"], killed.stdout + killed.stderr

    request.refresh_from_db()
    assert request.state == S.DEPLOYING and request.attempts == 1 and request.lease_expires_at > timezone.now()
    assert not Deployment.objects.filter(environment=p["production"]).exists()

    with TaskLog() as log:
        # The message redelivered (acks_late) while the lease is live finds the request taken.
        execute_promotion.delay(request.pk)
        log.wait(EXECUTE, 1)
        request.refresh_from_db()
        assert request.state == S.DEPLOYING and request.attempts == 1, describe_request(request.pk)
        # The sweep leaves a live lease alone...
        assert services.promotions_sweep()["requeued"] == 0
        # ...and queues the request again once the dead worker's lease has run out.
        PromotionRequest.objects.filter(pk=request.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        assert services.promotions_sweep()["requeued"] == 1
        request = wait_until_settled(request.pk)
        log.wait(EXECUTE, 2)

    assert request.state == S.DEPLOYED and request.attempts == 2, request.failure_reason
    (deployment,) = Deployment.objects.filter(environment=p["production"])
    assert deployment.promotion_request_id == request.pk and request.deployment_id == deployment.pk
    assert inbox(p["developer"], request).count(Event.PROMOTION_DEPLOYED) == 1
    assert services.promotions_sweep()["requeued"] == 0


# --- a broker that is down when the last approval lands ---------------------------------------------


@contextmanager
def broker_down_for_publishing():
    """Every publish fails as it does when the broker is down: the producer side of the Celery app
    points at a port nobody listens on, without publish retries. (The worker's consumer keeps its
    own connection, like a worker that is waiting for the broker to come back.)"""
    conf = celery_app.conf
    saved = {"broker_write_url": conf.get("broker_write_url"), "task_publish_retry": conf.task_publish_retry}

    def reset_pools():
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

    conf.broker_write_url, conf.task_publish_retry = DEAD_BROKER_URL, False
    reset_pools()
    try:
        yield
    finally:
        conf.broker_write_url, conf.task_publish_retry = saved["broker_write_url"], saved["task_publish_retry"]
        reset_pools()


def test_a_broker_down_when_the_last_approval_lands_still_approves_and_the_sweep_deploys_once(
    promo, api, celery_worker_thread, settings, caplog
):
    p = promo
    stage_for_production(p)
    request = request_production(p)
    services.promotion_approve(actor=p["prod_approver"], request=request)

    with broker_down_for_publishing():
        with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1\b"):  # the outage is real
            execute_promotion.apply_async(args=[request.pk])
        with caplog.at_level("WARNING", logger="planasonix.approvals"):
            response = api(p["prod_approver2"]).post(
                f"/api/v1/promotions/{request.pk}/approve/", {"comment": "ship it"}, format="json"
            )

    assert response.status_code == 200, response.content
    assert response.json()["state"] == S.APPROVED
    assert f"could not enqueue {EXECUTE}" in caplog.text  # the wake-up was lost...
    request.refresh_from_db()  # ...but the approval committed
    assert request.state == S.APPROVED and request.approved_at and request.attempts == 0
    assert ApprovalDecision.objects.filter(request=request).count() == 2
    assert not Deployment.objects.filter(environment=p["production"]).exists()

    # The broker is back. Within the dispatch grace the sweep leaves the request to its own message...
    assert services.promotions_sweep()["requeued"] == 0
    # ...after it, the beat's sweep (run by the real worker) queues it again and the worker deploys.
    settings.PROMOTION_DISPATCH_GRACE_SECONDS = 0
    with TaskLog() as log:
        sweep_promotions.delay()
        request = wait_until_settled(request.pk)
        log.wait(EXECUTE, 1)

    assert request.state == S.DEPLOYED and request.attempts == 1, request.failure_reason
    (deployment,) = Deployment.objects.filter(environment=p["production"])
    assert deployment.promotion_request_id == request.pk and request.deployment_id == deployment.pk
    assert services.promotions_sweep()["requeued"] == 0


# --- the same execute message delivered twice -------------------------------------------------------


def test_a_duplicated_execute_message_deploys_once(promo, celery_worker_thread):
    p = promo
    stage_for_production(p)
    request = request_production(p)
    with execute_messages_held() as held:
        services.promotion_approve(actor=p["prod_approver"], request=request)
        services.promotion_approve(actor=p["prod_approver2"], request=request)
    assert held == [request.pk]

    task_id = str(uuid.uuid4())
    with TaskLog() as log:
        # The same task (same id) delivered twice, back to back: the worker's two threads take one each.
        for _ in range(2):
            execute_promotion.apply_async(args=[request.pk], task_id=task_id)
        log.wait(EXECUTE, 2, task_id=task_id)
    request = wait_until_settled(request.pk)

    assert request.state == S.DEPLOYED and request.attempts == 1, request.failure_reason
    (deployment,) = Deployment.objects.filter(environment=p["production"])
    assert deployment.promotion_request_id == request.pk and request.deployment_id == deployment.pk
    assert inbox(p["developer"], request).count(Event.PROMOTION_DEPLOYED) == 1
    for approver in (p["prod_approver"], p["prod_approver2"]):
        assert inbox(approver, request).count(Event.PROMOTION_DEPLOYED) == 1
