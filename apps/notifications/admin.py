"""Admin for channels (written through the services, secrets write-only), the inbox and deliveries."""

from django import forms
from django.contrib import admin, messages

from apps.core.admin import IsSetListFilter, LightModelAdmin, ServiceModelAdmin, ViewOnlyAdminMixin, adopt, dry_run
from apps.core.errors import DomainError
from apps.tenancy.models import Organization
from apps.tenancy.permissions import ADMIN

from . import services
from .models import Channel, Delivery, DeliveryStatus, Event, Notification


def _masked_target(channel: Channel) -> str:
    return services.display_target(channel)


class ChannelAdminForm(forms.ModelForm):
    """The target and the signing secret are write-only: never pre-filled, never echoed back (not
    even after a validation error), and left blank on change to keep the stored value."""

    events = forms.MultipleChoiceField(
        choices=Event.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Events this channel hears; none ticked = all events.",
    )
    new_target = forms.CharField(
        label="Target",
        max_length=2000,
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off", "size": 80}),
        help_text="Email addresses (comma-separated) or the webhook URL. Write-only: leave blank to keep the current "
        "one when changing.",
    )
    signing_secret = forms.CharField(
        max_length=200,
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="Webhooks only. Write-only: generated (and shown once) when left blank on create; leave blank to "
        "keep the current one when changing.",
    )

    class Meta:
        model = Channel
        fields = ["organization", "name", "kind", "events", "is_active"]


@admin.register(Channel)
class ChannelAdmin(ServiceModelAdmin):
    service_decides_cascade = False
    form = ChannelAdminForm
    list_display = ["name", "organization", "kind", "masked_target", "events_display", "is_active", "fingerprint"]
    list_filter = ["kind", "is_active", "organization"]
    search_fields = ["name", "organization__name", "organization__slug"]
    list_select_related = ["organization"]
    ordering = ["organization__name", "name"]

    @admin.display(description="target")
    def masked_target(self, obj):
        return _masked_target(obj)

    @admin.display(description="events")
    def events_display(self, obj):
        return ", ".join(obj.events) if obj.events else "all"

    @admin.display(description="secret fingerprint", ordering="secret_fingerprint")
    def fingerprint(self, obj):
        return obj.secret_fingerprint or "—"

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, ADMIN).select_related("organization")

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "name", "kind", "new_target", "signing_secret", "events", "is_active"]
        return [
            "organization",
            "name",
            "kind",
            "masked_target",
            "new_target",
            "signing_secret",
            "fingerprint",
            "events",
            "is_active",
            "created_at",
            "updated_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["organization", "kind", "masked_target", "fingerprint", "created_at", "updated_at"]

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "organization":
            kwargs["queryset"] = Organization.objects.restrict(request.user, ADMIN)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def _service_kwargs(self, cleaned_data) -> dict:
        return {
            "target": cleaned_data.get("new_target") or None,
            "signing_secret": cleaned_data.get("signing_secret") or None,
            "events": list(cleaned_data.get("events") or []),
        }

    def service_validate(self, request, instance, cleaned_data, form) -> None:
        """Run the very service that save_model will call, and roll it back: its errors become form errors."""
        if instance.pk is None:
            dry_run(
                services.channel_create,
                actor=request.user,
                organization=cleaned_data["organization"],
                name=cleaned_data["name"],
                kind=cleaned_data["kind"],
                **self._service_kwargs(cleaned_data),
            )
        else:
            dry_run(
                services.channel_update,
                actor=request.user,
                channel=instance,
                name=cleaned_data["name"],
                is_active=cleaned_data["is_active"],
                **self._service_kwargs(cleaned_data),
            )

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        if change:
            saved = services.channel_update(
                actor=request.user,
                channel=obj,
                name=data["name"],
                is_active=data["is_active"],
                **self._service_kwargs(data),
            )
        else:
            saved, generated = services.channel_create(
                actor=request.user,
                organization=data["organization"],
                name=data["name"],
                kind=data["kind"],
                **self._service_kwargs(data),
            )
            if not data.get("is_active", True):
                saved = services.channel_update(actor=request.user, channel=saved, is_active=False)
            if generated:
                self.message_user(
                    request,
                    f"Signing secret for '{saved.name}' (shown once, copy it now): {generated}",
                    level=messages.WARNING,
                )
        adopt(obj, saved)

    def service_delete(self, request, obj) -> None:
        services.channel_delete(actor=request.user, channel=obj)

    def delete_queryset(self, request, queryset):
        for channel in queryset.select_related("organization"):
            self.delete_model(request, channel)


class _ReadOnlyAdmin(ViewOnlyAdminMixin, LightModelAdmin):
    """Rows written only by the services: administrators look, they do not edit."""


@admin.register(Notification)
class NotificationAdmin(_ReadOnlyAdmin):
    list_display = ["title", "event", "user", "organization", "created_at", "read_at"]
    list_filter = [
        "event",
        IsSetListFilter.on("read_at", "read", ("yes", "Read"), ("no", "Unread")),
        "organization",
        "created_at",
    ]
    search_fields = ["title", "event", "user__username", "user__email"]
    list_select_related = ["user", "organization"]
    date_hierarchy = "created_at"

    def get_queryset(self, request):
        return super().get_queryset(request).restrict(request.user, ADMIN)


@admin.register(Delivery)
class DeliveryAdmin(_ReadOnlyAdmin):
    list_display = [
        "delivery_id",
        "event",
        "channel",
        "recipient",
        "organization",
        "status",
        "attempts",
        "last_response_code",
        "last_error",
        "next_attempt_at",
        "created_at",
        "delivered_at",
    ]
    list_filter = ["status", "event", "channel__kind", "organization"]
    search_fields = ["event", "channel__name", "recipient__username", "last_error"]
    list_select_related = ["channel", "recipient", "organization"]
    date_hierarchy = "created_at"
    actions = ["retry_now"]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .restrict(request.user, ADMIN)
            .select_related("channel", "recipient", "organization")
        )

    @admin.action(description="Retry the selected deliveries now")
    def retry_now(self, request, queryset):
        retried = skipped = 0
        for delivery in queryset.select_related("organization"):
            try:
                result = services.delivery_retry_now(actor=request.user, delivery=delivery)
            except DomainError as exc:
                self.message_user(request, f"{delivery.delivery_id}: {exc.message}", level=messages.ERROR)
                continue
            if result.status == DeliveryStatus.PENDING:
                retried += 1
            else:
                skipped += 1
        if retried:
            self.message_user(request, f"{retried} delivery(ies) queued for another attempt.", level=messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                f"{skipped} delivery(ies) skipped: only pending or failed deliveries are retried.",
                level=messages.WARNING,
            )
