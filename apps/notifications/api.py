"""API for notification channels and the in-app inbox."""

from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.core.api import ADMIN_WRITES, CursorPagination, StrictSerializer
from apps.core.filtersets import organization_filterset
from apps.core.viewsets import ServiceFamily, ServiceViewSet
from apps.tenancy.api import MemberOrganizationField, organization_shown

from . import selectors, services
from .models import Channel, ChannelKind, Event, Notification


class ChannelSerializer(serializers.ModelSerializer):
    organization = organization_shown()
    target = serializers.SerializerMethodField(help_text="Email addresses, or the URL masked as scheme://host/….")
    has_secret = serializers.SerializerMethodField()

    class Meta:
        model = Channel
        fields = [
            "id",
            "organization",
            "name",
            "kind",
            "target",
            "events",
            "is_active",
            "has_secret",
            "secret_fingerprint",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_target(self, obj) -> str:
        return services.display_target(obj)

    def get_has_secret(self, obj) -> bool:
        return bool(obj.secret_ciphertext)


class ChannelCreateSerializer(StrictSerializer):
    organization = MemberOrganizationField()
    name = serializers.CharField(max_length=80)
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    target = serializers.CharField(max_length=2000, help_text="Email addresses (comma-separated) or the webhook URL.")
    events = serializers.ListField(child=serializers.ChoiceField(choices=Event.choices), required=False, max_length=50)
    signing_secret = serializers.CharField(
        max_length=200,
        required=False,
        write_only=True,
        help_text="Webhooks only; generated (and returned once) when omitted.",
    )


class ChannelUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=80, required=False)
    target = serializers.CharField(max_length=2000, required=False)
    events = serializers.ListField(child=serializers.ChoiceField(choices=Event.choices), required=False, max_length=50)
    is_active = serializers.BooleanField(required=False)
    signing_secret = serializers.CharField(max_length=200, required=False, write_only=True)


class ChannelViewSet(ServiceViewSet):
    """Where events go. Secrets (signing keys, Slack-style URLs) are write-only: responses show a
    fingerprint, and a generated webhook signing secret is returned once, by create."""

    serializer_class = ChannelSerializer
    update_serializer_class = ChannelUpdateSerializer
    filterset_class = organization_filterset(Channel, ["organization", "kind", "is_active"])
    search_fields = ["name"]
    ordering_fields = ["name", "created_at"]
    required_scopes = ADMIN_WRITES
    visible = selectors.channels_for
    writes = ServiceFamily("channel", update=services.channel_update, delete=services.channel_delete)

    @extend_schema(
        request=ChannelCreateSerializer,
        responses={
            201: inline_serializer(
                "ChannelCreated",
                {
                    "channel": ChannelSerializer(),
                    "signing_secret": serializers.CharField(
                        allow_null=True, help_text="Only when generated; shown once."
                    ),
                },
            )
        },
    )
    def create(self, request):
        data = ChannelCreateSerializer(data=request.data, context={"request": request})
        data.is_valid(raise_exception=True)
        channel, generated = services.channel_create(actor=request.user, **data.validated_data)
        return Response(
            {"channel": ChannelSerializer(channel).data, "signing_secret": generated}, status=status.HTTP_201_CREATED
        )


class NotificationSerializer(serializers.ModelSerializer):
    organization = organization_shown()

    class Meta:
        model = Notification
        fields = ["id", "organization", "event", "title", "payload", "created_at", "read_at"]
        read_only_fields = fields


class NotificationFilter(filters.FilterSet):
    unread = filters.BooleanFilter(field_name="read_at", lookup_expr="isnull")

    class Meta:
        model = Notification
        fields = ["event", "unread"]


class NotificationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Your in-app inbox."""

    pagination_class = CursorPagination  # large and append-mostly: no COUNT(*)
    queryset = Notification.objects.none()
    serializer_class = NotificationSerializer
    filterset_class = NotificationFilter
    ordering_fields = ["created_at"]

    def get_queryset(self):
        return selectors.inbox_of(self.request.user)

    @extend_schema(request=None, responses=NotificationSerializer)
    @action(detail=True, methods=["post"], url_path="mark-read")
    def mark_read(self, request, pk=None):
        notification = services.notification_mark_read(actor=request.user, notification=self.get_object())
        return Response(NotificationSerializer(notification).data)

    @extend_schema(request=None, responses=inline_serializer("MarkedRead", {"marked": serializers.IntegerField()}))
    @action(detail=False, methods=["post"], url_path="mark-all-read")
    def mark_all_read(self, request):
        return Response({"marked": services.notifications_mark_all_read(actor=request.user)})
