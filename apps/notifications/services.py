"""Emitting events, managing channels, and delivering with retries (the delivery row is the outbox)."""

import json
import logging
import random
import secrets
import time
from datetime import timedelta
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.core.mail import send_mail
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from apps.core import crypto, egress
from apps.core.egress_http import pinned_request
from apps.core.errors import PermissionDenied, ValidationFailed, field_error
from apps.core.queue import enqueue
from apps.core.services import audited_delete, audited_save, first_unlocked
from apps.core.types import User
from apps.tenancy.permissions import api_key_of, is_org_admin, require_org_admin

from . import signing
from .models import Channel, ChannelKind, Delivery, DeliveryStatus, Event, Notification

logger = logging.getLogger("planasonix.notifications")

# Responses that mean "try again later"; any other 4xx is final (the receiver refused the body).
RETRYABLE_STATUSES = {408, 409, 425, 429}


# --- channels -------------------------------------------------------------------------------


def mask_url(url: str) -> str:
    """scheme://host[:port]/… — enough to recognise a Slack-style URL without revealing its token.
    Any user:password in the authority is dropped too (it is a credential as much as the path)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}/…"


def display_target(channel: Channel) -> str:
    """How a channel's target is shown anywhere (API, admin): email addresses as they are, URLs as
    scheme://host/… since a webhook path or query often carries a token."""
    if channel.kind == ChannelKind.EMAIL or not channel.target:
        return channel.target
    return mask_url(channel.target)


def _validate_url(field: str, url: str) -> None:
    parts = urlsplit(url or "")
    try:
        parts.port  # noqa: B018  (raises ValueError for a port out of range or not a number)
    except ValueError:
        raise field_error(field, "Give an http(s) URL with a valid port.") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise field_error(field, "Give an http(s) URL.")
    if parts.username or parts.password:
        raise field_error(field, "Do not put credentials in the URL; webhooks are authenticated by their signature.")


def _validate_emails(target: str) -> None:
    from django.core.validators import validate_email

    addresses = [a.strip() for a in (target or "").split(",") if a.strip()]
    if not addresses:
        raise field_error("target", "Give one or more email addresses, separated by commas.")
    for address in addresses:
        try:
            validate_email(address)
        except Exception as exc:
            raise field_error("target", f"'{address}' is not an email address.") from exc


def _validate_events(events) -> list[str]:
    if events is None:
        return []
    if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
        raise field_error("events", "Give a list of event names.")
    unknown = [e for e in events if e not in Event.values]
    if unknown:
        raise field_error("events", f"Unknown event(s): {', '.join(unknown)}.")
    return sorted(set(events))


@transaction.atomic
def channel_create(
    *, actor: User, organization, name: str, kind: str, target: str, events=None, signing_secret: str | None = None
) -> tuple[Channel, str | None]:
    """Create a channel. Returns (channel, generated signing secret or None): a webhook without a
    given secret gets a generated one, shown to the caller this once."""
    require_org_admin(actor, organization, "manage channels")
    channel = Channel(organization=organization, name=name, kind=kind, events=_validate_events(events))
    generated = _apply_target_and_secret(channel, kind, target, signing_secret)
    audited_save(channel, actor=actor, reason="channel created")
    return channel, generated


def _check_egress(channel: Channel, url: str, *, connect: bool = False) -> list:
    """A webhook makes the server send requests: its URL passes the egress policy (apps.core.egress).
    Returns the checked addresses (with `connect=True`, the ones to connect to)."""
    return egress.check_url(
        url, organization=channel.organization, field="target", schemes=("https", "http"), connect=connect
    )


def _apply_target_and_secret(channel: Channel, kind: str, target: str | None, signing_secret: str | None):
    generated = None
    if kind == ChannelKind.EMAIL:
        if target is not None:
            _validate_emails(target)
            channel.target = ",".join(a.strip() for a in target.split(",") if a.strip())
        if signing_secret:
            raise field_error("signing_secret", "Email channels are not signed.")
        channel.secret_ciphertext = channel.secret_fingerprint = ""
    elif kind == ChannelKind.WEBHOOK:
        if target is not None:
            _validate_url("target", target)
            _check_egress(channel, target)
            channel.target = target
        if signing_secret is not None:
            if len(signing_secret) < 16:
                raise field_error("signing_secret", "Use at least 16 characters.")
            secret = signing_secret
        elif not channel.secret_ciphertext:
            secret = generated = secrets.token_urlsafe(32)
        else:
            secret = None
        if secret is not None:
            channel.secret_ciphertext = crypto.encrypt(secret)
            channel.secret_fingerprint = crypto.fingerprint(secret)
    elif kind == ChannelKind.SLACK:
        if signing_secret:
            raise field_error("signing_secret", "Slack-style webhooks carry their credential in the URL.")
        if target is not None:
            _validate_url("target", target)
            _check_egress(channel, target)
            channel.target = mask_url(target)
            channel.secret_ciphertext = crypto.encrypt(target)
            channel.secret_fingerprint = crypto.fingerprint(target)
        elif not channel.secret_ciphertext:
            raise field_error("target", "Give the incoming-webhook URL.")
    else:
        raise field_error("kind", f"'{kind}' is not one of {', '.join(ChannelKind.values)}.")
    if target is not None:
        channel.target_display = display_target(channel)
        channel.target_fingerprint = crypto.fingerprint(target)
    return generated


@transaction.atomic
def channel_update(
    *, actor: User, channel: Channel, name=None, target=None, events=None, is_active=None, signing_secret=None
) -> Channel:
    """Change a channel; the kind is fixed. A new target or secret replaces the stored one."""
    channel = Channel.objects.select_for_update().select_related("organization").get(pk=channel.pk)
    require_org_admin(actor, channel.organization, "manage channels")
    if name is not None:
        channel.name = name
    if events is not None:
        channel.events = _validate_events(events)
    if is_active is not None:
        channel.is_active = is_active
    _apply_target_and_secret(channel, channel.kind, target, signing_secret)
    audited_save(channel, actor=actor, reason="channel changed")
    return channel


@transaction.atomic
def channel_delete(*, actor: User, channel: Channel) -> None:
    require_org_admin(actor, channel.organization, "manage channels")
    audited_delete(channel, actor=actor, reason="channel deleted")


# --- emitting -------------------------------------------------------------------------------


def _title(event: str, payload: dict) -> str:
    return str(payload.get("title") or event.replace(".", " ").capitalize())[:300]


def _json_safe(payload: dict) -> dict:
    return json.loads(json.dumps(payload, cls=DjangoJSONEncoder))


@transaction.atomic
def emit(
    event: str, payload: dict, *, organization, channels=(), users=(), email_users: bool = False
) -> tuple[list[Notification], list[Delivery]]:
    """Record an event for users' in-app inboxes and queue one delivery per listening channel and,
    with `email_users`, one email delivery per user with an address.

    Deliveries are sent by workers after the surrounding transaction commits; the beat sweep
    re-sends any that a broker outage or a dead worker left behind."""
    if event not in Event.values:
        raise ValidationFailed(f"Unknown event '{event}'.", fields={"event": ["Unknown event."]})
    payload = _json_safe(payload)
    title = _title(event, payload)
    now = timezone.now()
    seen_users: dict[int, User] = {}
    for user in users:
        seen_users.setdefault(user.pk, user)
    notifications = Notification.objects.bulk_create(
        [
            Notification(organization=organization, user=u, event=event, title=title, payload=payload)
            for u in seen_users.values()
        ]
    )
    listening = [
        c for c in {c.pk: c for c in channels}.values() if c.organization_id == organization.pk and c.hears(event)
    ]
    outbox = [
        Delivery(organization=organization, channel=c, event=event, payload=payload, next_attempt_at=now)
        for c in listening
    ]
    if email_users:
        outbox += [
            Delivery(organization=organization, recipient=u, event=event, payload=payload, next_attempt_at=now)
            for u in seen_users.values()
            if u.email
        ]
    deliveries = Delivery.objects.bulk_create(outbox)
    ids = [d.pk for d in deliveries]
    if ids:
        transaction.on_commit(lambda: _enqueue(ids), robust=True)
    return notifications, deliveries


def _enqueue(delivery_ids, countdown: float | None = None) -> None:
    """Wake a sender per delivery (apps.core.queue: if the broker is down the sweep re-sends it)."""
    from .tasks import deliver

    for delivery_id in delivery_ids:
        enqueue(deliver, [delivery_id], countdown=countdown)


# --- inbox ----------------------------------------------------------------------------------


def notification_mark_read(*, actor: User, notification: Notification) -> Notification:
    if notification.user_id != actor.pk:
        raise PermissionDenied("You can only mark your own notifications.")
    if notification.read_at is None:
        notification.read_at = timezone.now()
        notification.save(update_fields=["read_at"])
    return notification


def notifications_mark_all_read(*, actor: User) -> int:
    """Mark the actor's unread notifications read; through an API key, only those of the key's organization
    (the inbox it can see)."""
    unread = Notification.objects.filter(user=actor, read_at__isnull=True)
    key = api_key_of(actor)
    if key is not None:
        unread = unread.filter(organization_id=key.organization_id)
    return unread.update(read_at=timezone.now())


# --- delivering -----------------------------------------------------------------------------


def backoff_seconds(attempts: int) -> float:
    """Exponential backoff with full jitter, capped."""
    ceiling = min(
        settings.DELIVERY_BACKOFF_MAX_SECONDS, settings.DELIVERY_BACKOFF_BASE_SECONDS * 2 ** max(attempts - 1, 0)
    )
    return random.uniform(ceiling / 2, ceiling)


def _claim(delivery_pk: int) -> Delivery | None:
    """Take the delivery for one attempt (a lease) if it is due; None if someone else has it."""
    now = timezone.now()
    with transaction.atomic():
        delivery = first_unlocked(Delivery.objects.select_related("channel", "recipient").filter(pk=delivery_pk))
        if delivery is None or delivery.status in (DeliveryStatus.SUCCEEDED, DeliveryStatus.FAILED):
            return None
        if delivery.status == DeliveryStatus.SENDING and delivery.lease_expires_at and delivery.lease_expires_at > now:
            return None
        if delivery.status == DeliveryStatus.PENDING and delivery.next_attempt_at > now:
            return None
        delivery.status = DeliveryStatus.SENDING
        delivery.attempts += 1
        delivery.lease_expires_at = now + timedelta(seconds=settings.DELIVERY_LEASE_SECONDS)
        delivery.save(update_fields=["status", "attempts", "lease_expires_at"])
        return delivery


def delivery_attempt(delivery_pk: int) -> Delivery | None:
    """Send one due delivery and record the outcome; schedules the retry on a transient failure."""
    delivery = _claim(delivery_pk)
    if delivery is None:
        return None
    channel = delivery.channel
    code, error, retryable = None, "", True
    try:
        if channel is not None and not channel.is_active:
            code, error, retryable = None, "channel is inactive", False
        elif channel is None:  # an email to one user
            recipient = delivery.recipient
            if recipient is None or not (recipient.is_active and recipient.email):
                code, error, retryable = None, "recipient is inactive or has no email address", False
            else:
                code = _send_email(delivery, [recipient.email])
        else:
            code = _send(channel, delivery)
            if 200 <= code < 300:
                error = ""
            else:
                error = f"HTTP {code}"
                retryable = code >= 500 or code in RETRYABLE_STATUSES
    except egress.EgressRefused as exc:
        # Final: the URL resolves to an address the policy refuses now (DNS changed since it was saved).
        error, retryable = f"refused by the egress policy: {exc.fields['target'][0]}", False
    except requests.RequestException as exc:
        error = f"{type(exc).__name__}"
    except crypto.UndecryptableValue:
        error, retryable = "channel secret cannot be decrypted with the configured keys", False
    except Exception as exc:  # SMTP and others: keep the type only, never the message (may echo targets)
        logger.exception("delivery %s failed", delivery.delivery_id)
        error = type(exc).__name__
    return _record(delivery, code=code, error=error, retryable=retryable)


def _record(delivery: Delivery, *, code, error: str, retryable: bool) -> Delivery:
    """Store the attempt's outcome. The retry's wake-up is enqueued only after the row is saved and
    committed as pending: a worker that picks it up at once must find the row due, not still leased."""
    now = timezone.now()
    delivery.last_response_code = code
    delivery.last_error = error[:500]
    delivery.lease_expires_at = None
    wait = None
    if not error:
        delivery.status = DeliveryStatus.SUCCEEDED
        delivery.delivered_at = now
    elif retryable and delivery.attempts < settings.DELIVERY_MAX_ATTEMPTS:
        delivery.status = DeliveryStatus.PENDING
        wait = backoff_seconds(delivery.attempts)
        delivery.next_attempt_at = now + timedelta(seconds=wait)
    else:
        delivery.status = DeliveryStatus.FAILED
    with transaction.atomic():
        delivery.save(
            update_fields=[
                "status",
                "last_response_code",
                "last_error",
                "lease_expires_at",
                "delivered_at",
                "next_attempt_at",
            ]
        )
        if wait is not None:
            transaction.on_commit(lambda: _enqueue([delivery.pk], countdown=wait), robust=True)
    return delivery


def _body(delivery: Delivery) -> bytes:
    envelope = {
        "id": str(delivery.delivery_id),
        "event": delivery.event,
        "created_at": delivery.created_at.isoformat(),
        "payload": delivery.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


def _send_email(delivery: Delivery, recipients: list[str]) -> int:
    send_mail(
        subject=f"[Planasonix] {_title(delivery.event, delivery.payload)}",
        message=json.dumps(delivery.payload, indent=2, sort_keys=True),
        from_email=None,
        recipient_list=recipients,
    )
    return 250 if recipients else 0


def _send(channel: Channel, delivery: Delivery) -> int:
    timeout = settings.WEBHOOK_TIMEOUT_SECONDS
    if channel.kind == ChannelKind.EMAIL:
        return _send_email(delivery, [a for a in channel.target.split(",") if a])
    if channel.kind == ChannelKind.SLACK:
        url = crypto.decrypt(channel.secret_ciphertext)
        addresses = _check_egress(channel, url, connect=True)
        text = f"*{_title(delivery.event, delivery.payload)}* ({delivery.event})"
        body = json.dumps({"text": text, "planasonix": json.loads(_body(delivery))}).encode()
        response = pinned_request(
            "POST", url, addresses=addresses, data=body, headers={"Content-Type": "application/json"}, timeout=timeout
        )
        return response.status_code
    body = _body(delivery)
    timestamp = int(time.time())
    secret = crypto.decrypt(channel.secret_ciphertext)
    message_id = str(delivery.delivery_id)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "Planasonix-Webhooks/1",
        "X-Planasonix-Event": delivery.event,
        "X-Planasonix-Delivery": message_id,
        "X-Planasonix-Timestamp": str(timestamp),
        "X-Planasonix-Signature": signing.sign(secret, timestamp, body),
        # The same delivery in the Standard Webhooks header set (see signing.py).
        "webhook-id": message_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signing.standard_signature(secret, message_id, timestamp, body),
    }
    addresses = _check_egress(channel, channel.target, connect=True)
    response = pinned_request("POST", channel.target, addresses=addresses, data=body, headers=headers, timeout=timeout)
    return response.status_code


def deliveries_sweep() -> int:
    """Re-enqueue deliveries that are due but were never picked up, or whose lease ran out."""
    now = timezone.now()
    grace = now - timedelta(seconds=30)
    due = list(
        Delivery.objects.filter(status=DeliveryStatus.PENDING, next_attempt_at__lte=grace).values_list("pk", flat=True)[
            :500
        ]
    )
    stuck = list(
        Delivery.objects.filter(status=DeliveryStatus.SENDING, lease_expires_at__lte=now).values_list("pk", flat=True)[
            :500
        ]
    )
    _enqueue(due + stuck)
    return len(due) + len(stuck)


def delivery_retry_now(*, actor: User, delivery: Delivery) -> Delivery:
    """An operator's 'send again' for a failed delivery."""
    if not is_org_admin(actor, delivery.organization):
        raise PermissionDenied("Only organization owners and admins retry deliveries.")
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().get(pk=delivery.pk)
        if delivery.status in (DeliveryStatus.FAILED, DeliveryStatus.PENDING):
            delivery.status = DeliveryStatus.PENDING
            delivery.attempts = 0
            delivery.next_attempt_at = timezone.now()
            delivery.save(update_fields=["status", "attempts", "next_attempt_at"])
            transaction.on_commit(lambda: _enqueue([delivery.pk]), robust=True)
    return delivery
