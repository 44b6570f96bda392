"""Services without a worker: emitting, channel rules, signing, the claim/record state machine."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core import crypto
from apps.core.errors import PermissionDenied, ValidationFailed
from apps.notifications import services, signing
from apps.notifications.models import Channel, ChannelKind, Delivery, DeliveryStatus, Event, Notification

pytestmark = pytest.mark.django_db


# --- emit -----------------------------------------------------------------------------------


def test_emit_creates_inbox_rows_and_deliveries_only_for_listening_channels_of_the_org(
    org, org_admin, members, other_org, other_owner, make_channel
):
    developer = members["developer"]
    hears_all, _ = make_channel(ChannelKind.WEBHOOK, "https://a.example.com/hook")
    hears_run, _ = make_channel(ChannelKind.EMAIL, "ops@example.com", events=[Event.RUN_FAILED])
    deaf, _ = make_channel(ChannelKind.WEBHOOK, "https://b.example.com/hook", events=[Event.PROMOTION_APPROVED])
    inactive, _ = make_channel(ChannelKind.WEBHOOK, "https://c.example.com/hook")
    services.channel_update(actor=org_admin, channel=inactive, is_active=False)
    inactive.refresh_from_db()
    foreign, _ = make_channel(
        ChannelKind.WEBHOOK, "https://d.example.com/hook", organization=other_org, actor=other_owner
    )

    notifications, deliveries = services.emit(
        Event.RUN_FAILED,
        {"title": "Nightly load failed", "run": 7},
        organization=org,
        channels=[hears_all, hears_run, hears_run, deaf, inactive, foreign],
        users=[developer, org_admin, developer],
    )

    assert sorted(n.user_id for n in notifications) == sorted([developer.pk, org_admin.pk])
    assert Notification.objects.filter(event=Event.RUN_FAILED).count() == 2
    assert {n.title for n in Notification.objects.all()} == {"Nightly load failed"}
    assert {d.channel_id for d in deliveries} == {hears_all.pk, hears_run.pk}
    rows = Delivery.objects.filter(event=Event.RUN_FAILED)
    assert sorted(rows.values_list("channel_id", flat=True)) == sorted([hears_all.pk, hears_run.pk])
    assert set(rows.values_list("status", flat=True)) == {DeliveryStatus.PENDING}
    assert rows.first().payload == {"title": "Nightly load failed", "run": 7}


def test_emit_refuses_unknown_event_and_writes_nothing(org, org_admin, make_channel):
    channel, _ = make_channel()
    with pytest.raises(ValidationFailed) as exc:
        services.emit("run.exploded", {}, organization=org, channels=[channel], users=[org_admin])
    assert "event" in exc.value.fields
    assert not Notification.objects.exists()
    assert not Delivery.objects.exists()


def test_emit_keeps_the_delivery_when_the_broker_is_down(
    org, make_channel, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.notifications import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionError("broker unreachable")

    monkeypatch.setattr(tasks.deliver, "apply_async", broker_down)
    channel, _ = make_channel()
    with django_capture_on_commit_callbacks(execute=True):
        services.emit(Event.RUN_SUCCEEDED, {}, organization=org, channels=[channel])
    delivery = Delivery.objects.get()
    assert delivery.status == DeliveryStatus.PENDING


# --- channels -------------------------------------------------------------------------------


def test_webhook_without_secret_gets_a_generated_one_stored_encrypted(make_channel):
    channel, generated = make_channel(ChannelKind.WEBHOOK, "https://hooks.example.com/x")
    assert generated and len(generated) >= 32
    assert generated not in channel.secret_ciphertext
    assert crypto.decrypt(channel.secret_ciphertext) == generated
    assert channel.secret_fingerprint == crypto.fingerprint(generated)


def test_webhook_with_given_secret_returns_none(make_channel):
    channel, generated = make_channel(signing_secret="s" * 20)
    assert generated is None
    assert crypto.decrypt(channel.secret_ciphertext) == "s" * 20


def test_slack_url_is_kept_encrypted_and_target_masked(make_channel):
    url = "https://hooks.slack.example/services/T000/B000/tokenXYZ"
    channel, generated = make_channel(ChannelKind.SLACK, url)
    assert generated is None
    assert channel.target == "https://hooks.slack.example/…"
    assert crypto.decrypt(channel.secret_ciphertext) == url


def test_masked_url_drops_credentials_in_the_authority():
    assert services.mask_url("https://user:hunter2@hooks.example.com:8443/x/y?token=abc") == (
        "https://hooks.example.com:8443/…"
    )


@pytest.mark.parametrize(
    ("kind", "target", "extra", "field"),
    [
        ("sms", "https://x.example.com", {}, "kind"),
        (ChannelKind.WEBHOOK, "ftp://x.example.com/hook", {}, "target"),
        (ChannelKind.WEBHOOK, "not a url", {}, "target"),
        (ChannelKind.SLACK, "javascript:alert(1)", {}, "target"),
        (ChannelKind.EMAIL, "ops@example.com, nope", {}, "target"),
        (ChannelKind.EMAIL, "ops@example.com", {"signing_secret": "x" * 20}, "signing_secret"),
        (ChannelKind.WEBHOOK, "https://x.example.com", {"signing_secret": "short"}, "signing_secret"),
        (ChannelKind.WEBHOOK, "https://x.example.com", {"events": ["no.such"]}, "events"),
        (ChannelKind.WEBHOOK, "https://x.example.com", {"name": ""}, "name"),
    ],
)
def test_channel_create_refuses_bad_input_naming_the_field(org, org_admin, kind, target, extra, field):
    kwargs = {"name": "ops", **extra}
    with pytest.raises(ValidationFailed) as exc:
        services.channel_create(actor=org_admin, organization=org, kind=kind, target=target, **kwargs)
    assert field in exc.value.fields
    assert not Channel.objects.exists()


def test_channel_names_are_unique_per_organization(org, org_admin, make_channel):
    make_channel(name="ops")
    with pytest.raises(ValidationFailed):
        make_channel(name="ops")
    assert Channel.objects.count() == 1


def test_only_org_admins_manage_channels(org, members, outsider, make_channel):
    with pytest.raises(PermissionDenied):
        make_channel(actor=members["developer"])
    with pytest.raises(PermissionDenied):
        make_channel(actor=outsider)
    channel, _ = make_channel()
    with pytest.raises(PermissionDenied):
        services.channel_update(actor=members["developer"], channel=channel, name="mine")
    with pytest.raises(PermissionDenied):
        services.channel_delete(actor=members["developer"], channel=channel)
    assert Channel.objects.get().name == channel.name


def test_channel_update_keeps_secret_unless_replaced_and_records_history(org_admin, make_channel):
    channel, generated = make_channel()
    services.channel_update(actor=org_admin, channel=channel, name="renamed", events=[Event.RUN_FAILED])
    channel.refresh_from_db()
    assert crypto.decrypt(channel.secret_ciphertext) == generated
    services.channel_update(actor=org_admin, channel=channel, signing_secret="n" * 24)
    channel.refresh_from_db()
    assert crypto.decrypt(channel.secret_ciphertext) == "n" * 24
    history = list(channel.history.order_by("history_id"))
    assert [h.history_change_reason for h in history] == ["channel created", "channel changed", "channel changed"]
    assert {h.history_user_id for h in history} == {org_admin.pk}
    assert history[0].secret_fingerprint != history[-1].secret_fingerprint


# --- inbox ----------------------------------------------------------------------------------


def test_mark_read_only_own(org, org_admin, members):
    developer = members["developer"]
    (mine, theirs), _ = services.emit(Event.RUN_FAILED, {}, organization=org, users=[developer, org_admin])
    services.notification_mark_read(actor=developer, notification=mine)
    assert Notification.objects.get(pk=mine.pk).read_at is not None
    with pytest.raises(PermissionDenied):
        services.notification_mark_read(actor=developer, notification=theirs)
    assert Notification.objects.get(pk=theirs.pk).read_at is None


# --- signing --------------------------------------------------------------------------------


def test_verify_accepts_the_signature_it_made():
    now = int(time.time())
    body = b'{"id":"1"}'
    assert signing.verify("secret-1234567890", str(now), body, signing.sign("secret-1234567890", now, body))


def test_verify_rejects_wrong_secret_tampered_body_stale_or_missing_timestamp():
    now = int(time.time())
    body = b'{"id":"1","amount":1}'
    signature = signing.sign("right-secret-123456", now, body)
    assert not signing.verify("wrong-secret-123456", str(now), body, signature)
    assert not signing.verify("right-secret-123456", str(now), body.replace(b"1}", b"2}"), signature)
    stale = now - 301
    assert not signing.verify("right-secret-123456", str(stale), body, signing.sign("right-secret-123456", stale, body))
    assert not signing.verify("right-secret-123456", str(now + 1), body, signature)
    assert not signing.verify("right-secret-123456", None, body, signature)
    assert not signing.verify("right-secret-123456", str(now), body, None)


# --- claim / record -------------------------------------------------------------------------


def _delivery(channel, **fields):
    defaults = {"event": Event.RUN_FAILED, "payload": {}, "next_attempt_at": timezone.now()}
    return Delivery.objects.create(channel=channel, **{**defaults, **fields})


def test_claim_skips_rows_that_are_not_due_leased_or_finished(make_channel):
    channel, _ = make_channel()
    now = timezone.now()
    later = _delivery(channel, next_attempt_at=now + timedelta(minutes=5))
    leased = _delivery(channel, status=DeliveryStatus.SENDING, lease_expires_at=now + timedelta(minutes=1))
    done = _delivery(channel, status=DeliveryStatus.SUCCEEDED)
    expired = _delivery(channel, status=DeliveryStatus.SENDING, attempts=1, lease_expires_at=now - timedelta(seconds=1))
    assert services._claim(later.pk) is None
    assert services._claim(leased.pk) is None
    assert services._claim(done.pk) is None
    claimed = services._claim(expired.pk)
    assert claimed is not None and claimed.attempts == 2 and claimed.status == DeliveryStatus.SENDING


def test_inactive_channel_delivery_fails_without_sending(org_admin, make_channel, allow_loopback):
    channel, _ = make_channel(ChannelKind.WEBHOOK, "http://127.0.0.1:9/never")
    delivery = _delivery(channel)
    services.channel_update(actor=org_admin, channel=channel, is_active=False)
    services.delivery_attempt(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error == "channel is inactive"


def test_undecryptable_secret_is_final_and_does_not_echo(settings, make_channel, allow_loopback):
    channel, _ = make_channel(ChannelKind.WEBHOOK, "http://127.0.0.1:9/never")
    delivery = _delivery(channel)
    settings.FIELD_ENCRYPTION_KEYS = ["A" * 43 + "="]
    services.delivery_attempt(delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.FAILED
    assert "decrypted" in delivery.last_error


def test_retry_now_resets_a_failed_delivery_and_needs_an_org_admin(org_admin, members, make_channel):
    channel, _ = make_channel()
    delivery = _delivery(channel, status=DeliveryStatus.FAILED, attempts=8)
    with pytest.raises(PermissionDenied):
        services.delivery_retry_now(actor=members["developer"], delivery=delivery)
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.FAILED
    services.delivery_retry_now(actor=org_admin, delivery=delivery)
    delivery.refresh_from_db()
    assert delivery.status == DeliveryStatus.PENDING and delivery.attempts == 0


def test_sweep_picks_overdue_and_lease_expired_rows_only(make_channel, monkeypatch):
    channel, _ = make_channel()
    now = timezone.now()
    overdue = _delivery(channel, next_attempt_at=now - timedelta(minutes=2))
    stuck = _delivery(channel, status=DeliveryStatus.SENDING, attempts=1, lease_expires_at=now - timedelta(seconds=5))
    _delivery(channel, next_attempt_at=now)  # just emitted: its own task is on the way
    _delivery(channel, next_attempt_at=now + timedelta(minutes=5))
    _delivery(channel, status=DeliveryStatus.SENDING, attempts=1, lease_expires_at=now + timedelta(minutes=1))
    _delivery(channel, status=DeliveryStatus.FAILED, next_attempt_at=now - timedelta(hours=1))
    enqueued = []
    monkeypatch.setattr(services, "_enqueue", lambda ids, countdown=None: enqueued.extend(ids))
    assert services.deliveries_sweep() == 2
    assert sorted(enqueued) == sorted([overdue.pk, stuck.pk])


@pytest.mark.django_db(transaction=True)
def test_retry_wake_up_is_enqueued_only_after_the_row_is_back_to_pending(
    fast_retries, make_channel, monkeypatch, allow_loopback
):
    """Workers run in autocommit, where on_commit fires at once. A worker that picks the retry up at
    once must find the row pending, not still leased as 'sending' (else it drops the wake-up and the
    retry waits for the sweep)."""
    channel, _ = make_channel(ChannelKind.WEBHOOK, "http://127.0.0.1:9/never")
    delivery = _delivery(channel)
    seen = []

    def enqueue(ids, countdown=None):
        seen.extend(Delivery.objects.filter(pk__in=ids).values_list("status", "lease_expires_at"))

    monkeypatch.setattr(services, "_enqueue", enqueue)
    monkeypatch.setattr(services, "_send", lambda channel, delivery: 503)
    services.delivery_attempt(delivery.pk)
    assert seen == [(DeliveryStatus.PENDING, None)]
