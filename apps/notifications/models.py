"""Channels (email, webhook, Slack-style webhook), the in-app inbox and delivery attempts.

This app knows nothing of environments: callers pass the channels an event goes to."""

import uuid

from django.conf import settings
from django.db import models
from simple_history.models import HistoricalRecords

from apps.core.models import json_list, optional_reference
from apps.tenancy.models import Organization, OrganizationNamedModel
from apps.tenancy.querysets import OrgScopedQuerySet


class Event(models.TextChoices):
    PROMOTION_REQUESTED = "promotion.requested"
    PROMOTION_APPROVED = "promotion.approved"
    PROMOTION_REJECTED = "promotion.rejected"
    PROMOTION_DEPLOYED = "promotion.deployed"
    PROMOTION_FAILED = "promotion.failed"
    PROMOTION_EXPIRED = "promotion.expired"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"
    POLICY_VIOLATED = "policy.violated"
    DRIFT_DETECTED = "drift.detected"
    APPROVAL_REMINDER = "approval.reminder"
    FREEZE_OVERRIDDEN = "freeze.overridden"


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (HMAC-signed JSON)"
    SLACK = "slack", "Slack-style incoming webhook"


class Channel(OrganizationNamedModel):
    """Where an organization's events go.

    `target` is the visible address: email recipients, or the webhook URL. A Slack-style incoming
    webhook URL is itself the credential, so for `slack` the full URL is kept encrypted in
    `secret_ciphertext` and `target` holds only a masked form. For `webhook`, `secret_ciphertext`
    holds the HMAC signing key."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="channels")
    name = models.CharField(max_length=80)
    kind = models.CharField(max_length=20, choices=ChannelKind.choices)
    target = models.CharField(max_length=2000)
    secret_ciphertext = models.TextField(blank=True, editable=False)
    secret_fingerprint = models.CharField(max_length=32, blank=True, editable=False)
    # History keeps these instead of `target`: a webhook URL's path or query often carries a token.
    target_display = models.CharField(max_length=2000, blank=True, editable=False)
    target_fingerprint = models.CharField(max_length=32, blank=True, editable=False)
    events = json_list(help_text="Event names this channel hears; empty = all.")
    is_active = models.BooleanField(default=True)

    history = HistoricalRecords(excluded_fields=["target", "secret_ciphertext"])

    class Meta(OrganizationNamedModel.Meta):
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="uniq_channel_name")]

    def __str__(self):
        return f"{self.name} ({self.kind})"

    def hears(self, event: str) -> bool:
        return self.is_active and (not self.events or event in self.events)


class NotificationQuerySet(OrgScopedQuerySet):
    """To view: a user's own inbox items (through an API key: only the key's organization). To
    administer (the admin's review): every item of the organizations the user administers."""

    def restrict(self, user, action: str | None = None):
        if not getattr(user, "is_authenticated", False):
            return self.none()
        restricted = super().restrict(user, action)
        return restricted if action == "admin" else restricted.filter(user=user)


class Notification(models.Model):
    """An item in a user's in-app inbox."""

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="notifications")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notifications")
    event = models.CharField(max_length=64, db_index=True)
    title = models.CharField(max_length=300)
    payload = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    read_at = models.DateTimeField(null=True, blank=True)

    objects = NotificationQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "read_at"], name="notification_user_unread")]

    def __str__(self):
        return f"{self.event} for {self.user}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed (gave up)"


class DeliveryQuerySet(OrgScopedQuerySet):
    """Deliveries carry event payloads: only the organization's owners and admins see them."""

    organization_path = "organization"  # channel deliveries and personal emails alike
    default_action = "admin"


class Delivery(models.Model):
    """One event sent to one channel, or emailed to one person (an approver, a requester): the
    outbox row. Workers claim it with a lease, send it, and record the outcome; the beat sweep
    re-sends rows whose time has come or whose lease ran out."""

    delivery_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="deliveries")
    channel = optional_reference(Channel, on_delete=models.CASCADE, related_name="deliveries")
    recipient = optional_reference(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="email_deliveries",
        help_text="A person emailed at their address (instead of a channel).",
    )
    event = models.CharField(max_length=64, db_index=True)
    payload = models.JSONField(default=dict)
    status = models.CharField(max_length=20, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    next_attempt_at = models.DateTimeField(db_index=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = DeliveryQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="delivery_due")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(channel__isnull=False, recipient__isnull=True)
                | models.Q(channel__isnull=True, recipient__isnull=False),
                name="delivery_channel_or_recipient",
            )
        ]

    def __str__(self):
        return f"{self.event} → {self.channel or self.recipient} ({self.status})"

    def save(self, *args, **kwargs):
        if self.organization_id is None and self.channel_id is not None:  # a channel's delivery is its organization's
            self.organization_id = self.channel.organization_id
        super().save(*args, **kwargs)
