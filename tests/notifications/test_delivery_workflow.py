"""Deliveries sent by a real Celery worker (on the configured broker) to a real local HTTP receiver."""

import json
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.notifications import services, signing
from apps.notifications.models import ChannelKind, Delivery, DeliveryStatus, Event
from tests import postgres as pg

from .conftest import wait_for

pytestmark = [pytest.mark.workflow, pytest.mark.django_db(transaction=True)]


def _finished(delivery_pk):
    def check():
        delivery = Delivery.objects.get(pk=delivery_pk)
        return delivery if delivery.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED) else None

    return check


def test_signed_webhook_is_delivered_and_verifiable(org, make_channel, receiver, fast_retries, celery_worker_thread):
    channel, secret = make_channel(ChannelKind.WEBHOOK, f"{receiver.url}/hooks/planasonix")
    receiver.secret = secret

    _, (delivery,) = services.emit(Event.PROMOTION_DEPLOYED, {"promotion": 42}, organization=org, channels=[channel])

    done = wait_for(_finished(delivery.pk))
    assert done.status == DeliveryStatus.SUCCEEDED, done.last_error
    assert done.attempts == 1 and done.last_response_code == 200 and done.delivered_at is not None
    (request,) = receiver.received()
    assert request["path"] == "/hooks/planasonix"
    assert request["verified"] is True
    assert request["delivery"] == str(delivery.delivery_id)
    assert request["headers"]["x-planasonix-event"] == Event.PROMOTION_DEPLOYED
    assert request["json"]["id"] == str(delivery.delivery_id)
    assert request["json"]["payload"] == {"promotion": 42}
    # The signature covers the body: the same signature does not verify a different body.
    headers = request["headers"]
    assert not signing.verify(
        secret, headers["x-planasonix-timestamp"], request["body"] + b" ", headers["x-planasonix-signature"]
    )


def test_5xx_is_retried_with_the_same_delivery_id(org, make_channel, receiver, fast_retries, celery_worker_thread):
    channel, secret = make_channel(ChannelKind.WEBHOOK, f"{receiver.url}/hook")
    receiver.secret = secret
    receiver.statuses = [500]

    _, (delivery,) = services.emit(Event.RUN_FAILED, {"run": 1}, organization=org, channels=[channel])

    done = wait_for(_finished(delivery.pk))
    assert done.status == DeliveryStatus.SUCCEEDED, done.last_error
    assert done.attempts == 2
    assert done.last_response_code == 200 and done.last_error == ""
    requests_ = receiver.received()
    assert [r["status"] for r in requests_] == [500, 200]
    assert [r["delivery"] for r in requests_] == [str(delivery.delivery_id)] * 2
    assert all(r["verified"] for r in requests_)


def test_4xx_is_final(org, make_channel, receiver, fast_retries, celery_worker_thread):
    channel, _ = make_channel(ChannelKind.WEBHOOK, f"{receiver.url}/hook")
    receiver.statuses = [400, 200]

    _, (delivery,) = services.emit(Event.RUN_FAILED, {}, organization=org, channels=[channel])

    done = wait_for(_finished(delivery.pk))
    assert done.status == DeliveryStatus.FAILED
    assert done.attempts == 1
    assert done.last_response_code == 400 and done.last_error == "HTTP 400"
    assert len(receiver.received()) == 1


def test_429_is_retried(org, make_channel, receiver, fast_retries, celery_worker_thread):
    channel, _ = make_channel(ChannelKind.WEBHOOK, f"{receiver.url}/hook")
    receiver.statuses = [429]

    _, (delivery,) = services.emit(Event.RUN_FAILED, {}, organization=org, channels=[channel])

    done = wait_for(_finished(delivery.pk))
    assert done.status == DeliveryStatus.SUCCEEDED and done.attempts == 2


def test_connection_refused_is_retried_until_the_attempts_run_out(
    org, make_channel, refused_url, fast_retries, celery_worker_thread
):
    fast_retries.DELIVERY_MAX_ATTEMPTS = 3
    channel, _ = make_channel(ChannelKind.WEBHOOK, refused_url)

    _, (delivery,) = services.emit(Event.RUN_FAILED, {}, organization=org, channels=[channel])

    done = wait_for(_finished(delivery.pk))
    assert done.status == DeliveryStatus.FAILED
    assert done.attempts == 3
    assert done.last_response_code is None
    assert done.last_error == "ConnectionError"


def test_sweep_resends_overdue_and_lease_expired_deliveries(
    org, make_channel, receiver, fast_retries, celery_worker_thread
):
    """Rows whose task was lost (broker outage, killed worker) are found by the sweep and sent."""
    channel, secret = make_channel(ChannelKind.WEBHOOK, f"{receiver.url}/hook")
    receiver.secret = secret
    now = timezone.now()
    overdue = Delivery.objects.create(
        channel=channel, event=Event.RUN_FAILED, payload={"n": 1}, next_attempt_at=now - timedelta(minutes=5)
    )
    orphaned = Delivery.objects.create(
        channel=channel,
        event=Event.RUN_FAILED,
        payload={"n": 2},
        status=DeliveryStatus.SENDING,
        attempts=1,
        next_attempt_at=now - timedelta(minutes=5),
        lease_expires_at=now - timedelta(seconds=1),
    )
    assert receiver.received() == []

    assert services.deliveries_sweep() == 2

    first = wait_for(_finished(overdue.pk))
    second = wait_for(_finished(orphaned.pk))
    assert (first.status, first.attempts) == (DeliveryStatus.SUCCEEDED, 1)
    assert (second.status, second.attempts) == (DeliveryStatus.SUCCEEDED, 2)
    assert sorted(r["delivery"] for r in receiver.received()) == sorted(
        [str(overdue.delivery_id), str(orphaned.delivery_id)]
    )
    assert all(r["verified"] for r in receiver.received())


def test_sweep_task_runs_on_the_worker(org, make_channel, receiver, fast_retries, celery_worker_thread):
    from apps.notifications.tasks import sweep_deliveries

    channel, _ = make_channel(ChannelKind.WEBHOOK, f"{receiver.url}/hook")
    overdue = Delivery.objects.create(
        channel=channel, event=Event.RUN_FAILED, payload={}, next_attempt_at=timezone.now() - timedelta(minutes=5)
    )
    sweep_deliveries.delay()
    assert wait_for(_finished(overdue.pk)).status == DeliveryStatus.SUCCEEDED


def test_retry_now_sends_a_failed_delivery_again(
    org, org_admin, make_channel, receiver, fast_retries, celery_worker_thread
):
    channel, _ = make_channel(ChannelKind.WEBHOOK, f"{receiver.url}/hook")
    failed = Delivery.objects.create(
        channel=channel, event=Event.RUN_FAILED, payload={}, status=DeliveryStatus.FAILED, attempts=8,
        next_attempt_at=timezone.now() - timedelta(hours=1), last_response_code=503,
    )  # fmt: skip
    services.delivery_retry_now(actor=org_admin, delivery=failed)
    done = wait_for(_finished(failed.pk))
    assert done.status == DeliveryStatus.SUCCEEDED and done.attempts == 1
    assert [r["delivery"] for r in receiver.received()] == [str(failed.delivery_id)]


def test_slack_style_channel_posts_to_the_stored_url(org, make_channel, receiver, fast_retries, celery_worker_thread):
    channel, _ = make_channel(ChannelKind.SLACK, f"{receiver.url}/services/T0/B0/s3cr3tT0ken")
    _, (delivery,) = services.emit(
        Event.APPROVAL_REMINDER, {"title": "Approve me"}, organization=org, channels=[channel]
    )
    done = wait_for(_finished(delivery.pk))
    assert done.status == DeliveryStatus.SUCCEEDED, done.last_error
    (request,) = receiver.received()
    assert request["path"] == "/services/T0/B0/s3cr3tT0ken"
    assert "Approve me" in request["json"]["text"]
    assert request["json"]["planasonix"]["id"] == str(delivery.delivery_id)


def test_email_channel_sends_through_the_mail_backend(
    org, make_channel, mailoutbox, fast_retries, celery_worker_thread
):
    channel, _ = make_channel(ChannelKind.EMAIL, "ops@example.com, oncall@example.com")
    _, (delivery,) = services.emit(
        Event.POLICY_VIOLATED, {"title": "Row limit exceeded", "rows": 10}, organization=org, channels=[channel]
    )
    done = wait_for(_finished(delivery.pk))
    assert done.status == DeliveryStatus.SUCCEEDED, done.last_error
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["ops@example.com", "oncall@example.com"]
    assert "Row limit exceeded" in message.subject
    assert json.loads(message.body) == {"title": "Row limit exceeded", "rows": 10}


def test_two_deliveries_of_one_channel_are_claimed_at_the_same_time(org, make_channel):
    """A claim locks only its delivery row: a worker holding delivery A's lease transaction open
    must not make another worker skip delivery B of the same channel (PostgreSQL locks joined rows
    unless the lock is limited to the delivery table)."""
    import threading

    from django.db import connection, transaction

    pg.require_test_database(connection, "row locks with SKIP LOCKED are a PostgreSQL behaviour")
    channel, _ = make_channel(ChannelKind.WEBHOOK, "https://hooks.example.com/in")
    now = timezone.now() - timedelta(seconds=1)
    first = Delivery.objects.create(channel=channel, event=Event.RUN_FAILED, payload={}, next_attempt_at=now)
    second = Delivery.objects.create(channel=channel, event=Event.RUN_FAILED, payload={}, next_attempt_at=now)
    holding, release, claimed = threading.Event(), threading.Event(), []

    def hold_first():
        try:
            with transaction.atomic():
                claimed.append(services._claim(first.pk))
                holding.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=hold_first)
    thread.start()
    try:
        assert holding.wait(10)
        assert claimed[0] is not None
        assert services._claim(second.pk) is not None
    finally:
        release.set()
        thread.join(10)
