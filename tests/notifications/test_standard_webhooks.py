"""Deliveries also carry the Standard Webhooks header set: a receiver verifies them with the public
`standardwebhooks` package, and the X-Planasonix-* headers stay for compatibility."""

import datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from apps.notifications import services, signing
from apps.notifications.models import ChannelKind, DeliveryStatus, Event

pytestmark = pytest.mark.django_db(transaction=True)


def test_receiver_verifies_a_delivery_with_the_standardwebhooks_package(org, make_channel, receiver, monkeypatch):
    monkeypatch.setattr(services, "_enqueue", lambda *args, **kwargs: None)  # sent here, not by a worker
    channel, secret = make_channel(ChannelKind.WEBHOOK, f"{receiver.url}/hooks/std")
    _, (delivery,) = services.emit(Event.RUN_SUCCEEDED, {"run": 7}, organization=org, channels=[channel])

    done = services.delivery_attempt(delivery.pk)

    assert done.status == DeliveryStatus.SUCCEEDED, done.last_error
    (request,) = receiver.received()
    headers = request["headers"]
    assert headers["webhook-id"] == str(delivery.delivery_id) == headers["x-planasonix-delivery"]
    assert headers["webhook-timestamp"] == headers["x-planasonix-timestamp"]
    verifier = Webhook(signing.standard_webhooks_secret(secret))
    payload = verifier.verify(request["body"], headers)
    assert payload["payload"] == {"run": 7}
    # The compatibility headers still verify with the project's own helper.
    assert signing.verify(secret, headers["x-planasonix-timestamp"], request["body"], headers["x-planasonix-signature"])
    # A tampered body or another secret does not verify.
    with pytest.raises(WebhookVerificationError):
        verifier.verify(request["body"] + b" ", headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(signing.standard_webhooks_secret("another-secret-of-16+")).verify(request["body"], headers)


def test_standard_signature_is_what_the_library_signs():
    secret = "a-signing-secret-with-ünïcode"
    body = b'{"test": 2432232314}'
    when = datetime.datetime.fromtimestamp(1614265330, tz=datetime.UTC)
    expected = Webhook(signing.standard_webhooks_secret(secret)).sign(
        "msg_p5jXN8AQM9LWM0D4loKWxJek", when, body.decode()
    )
    assert signing.standard_signature(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == expected
