"""Emails to approvers (and to requesters) go through the delivery outbox like every notification:
one email delivery per person per event, retried with backoff when the mail server fails, re-sent
by the sweep, and sent once."""

import smtplib
from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from apps.approvals import services
from apps.notifications import services as notification_services
from apps.notifications.models import Delivery, DeliveryStatus, Event

pytestmark = pytest.mark.django_db


@pytest.fixture
def captured(monkeypatch):
    """Enqueued delivery ids (no worker here: the tests send them themselves)."""
    enqueued = []
    monkeypatch.setattr(notification_services, "_enqueue", lambda ids, countdown=None: enqueued.extend(ids))
    return enqueued


def request_staging(p):
    request, _ = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["development"], reason="go"
    )
    return request


def test_one_email_delivery_per_approver_per_event(promo, captured, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        request = request_staging(promo)
    emails = Delivery.objects.filter(event=Event.PROMOTION_REQUESTED, recipient__isnull=False)
    # The staging approvers: the staging approver and the owner (the requester is never asked).
    assert sorted(d.recipient.username for d in emails) == ["orgadmin", "stager"]
    assert all(d.channel is None and d.organization == promo["project"].organization for d in emails)
    assert all(d.status == DeliveryStatus.PENDING and d.payload["promotion"] == request.pk for d in emails)
    assert {d.pk for d in emails} <= set(captured)  # woken up after the commit

    for delivery in emails:
        notification_services.delivery_attempt(delivery.pk)

    assert sorted(m.to[0] for m in mail.outbox) == ["orgadmin@example.com", "stager@example.com"]
    subject = mail.outbox[0].subject
    assert subject == f"[Planasonix] promotion.requested: {promo['pipeline'].slug} v1 → staging"
    assert str(request.pk) in mail.outbox[0].body


def test_an_smtp_failure_is_retried_with_backoff_and_sent_once(promo, captured, monkeypatch, settings):
    settings.DELIVERY_BACKOFF_BASE_SECONDS = 30
    request = request_staging(promo)
    delivery = Delivery.objects.get(event=Event.PROMOTION_REQUESTED, recipient__username="stager")
    real_send_mail = notification_services.send_mail
    failures = [smtplib.SMTPServerDisconnected("Connection unexpectedly closed: stager@example.com")]

    def flaky_send_mail(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real_send_mail(*args, **kwargs)

    monkeypatch.setattr(notification_services, "send_mail", flaky_send_mail)

    before = timezone.now()
    failed = notification_services.delivery_attempt(delivery.pk)
    assert failed.status == DeliveryStatus.PENDING and failed.attempts == 1
    assert failed.last_error == "SMTPServerDisconnected"  # the type only, never the server's text
    assert before + timedelta(seconds=14) < failed.next_attempt_at < timezone.now() + timedelta(seconds=31)
    assert mail.outbox == []
    # Not due yet: a duplicate wake-up does nothing.
    assert notification_services.delivery_attempt(delivery.pk) is None

    Delivery.objects.filter(pk=delivery.pk).update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    assert delivery.pk in captured or notification_services.deliveries_sweep() >= 1
    sent = notification_services.delivery_attempt(delivery.pk)
    assert sent.status == DeliveryStatus.SUCCEEDED and sent.attempts == 2
    # Sent once: further wake-ups and sweeps leave a delivered email alone.
    assert notification_services.delivery_attempt(delivery.pk) is None
    captured.clear()
    notification_services.deliveries_sweep()
    assert delivery.pk not in captured
    assert [m.to for m in mail.outbox] == [["stager@example.com"]]
    assert request.pk


def test_the_sweep_resends_an_email_whose_worker_died(promo, captured):
    request_staging(promo)
    delivery = Delivery.objects.get(event=Event.PROMOTION_REQUESTED, recipient__username="stager")
    Delivery.objects.filter(pk=delivery.pk).update(
        status=DeliveryStatus.SENDING, attempts=1, lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    captured.clear()
    notification_services.deliveries_sweep()
    assert captured == [delivery.pk]
    assert notification_services.delivery_attempt(delivery.pk).status == DeliveryStatus.SUCCEEDED
    assert [m.to for m in mail.outbox] == [["stager@example.com"]]


def test_people_without_an_address_get_no_email_delivery(promo, captured):
    promo["staging_approver"].email = ""
    promo["staging_approver"].save()
    request_staging(promo)
    emails = Delivery.objects.filter(event=Event.PROMOTION_REQUESTED, recipient__isnull=False)
    assert [d.recipient.username for d in emails] == ["orgadmin"]


def test_an_email_to_someone_deactivated_since_is_not_sent(promo, captured):
    request_staging(promo)
    delivery = Delivery.objects.get(event=Event.PROMOTION_REQUESTED, recipient__username="stager")
    promo["staging_approver"].is_active = False
    promo["staging_approver"].save()
    result = notification_services.delivery_attempt(delivery.pk)
    assert result.status == DeliveryStatus.FAILED and "inactive" in result.last_error
    assert mail.outbox == []


def test_email_deliveries_are_their_organization_s(promo, captured, outsider, api):
    request_staging(promo)
    delivery = Delivery.objects.filter(recipient__isnull=False).first()
    from apps.notifications.selectors import deliveries_for

    assert delivery in deliveries_for(promo["org_admin"])
    assert delivery not in deliveries_for(outsider)
