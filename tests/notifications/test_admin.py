"""Django admin for channels (through the services, write-only secrets), the inbox and deliveries."""

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from apps.notifications import services
from apps.notifications.models import Channel, ChannelKind, Delivery, DeliveryStatus, Event, Notification

pytestmark = pytest.mark.django_db

SLACK_URL = "https://hooks.slack.example/services/T0AAA/B0BBB/xoxbAdminToken999"
SECRET_FRAGMENTS = ("xoxbAdminToken999", "/services/T0AAA")


@pytest.fixture
def admin_client_(superuser):
    client = Client()
    client.force_login(superuser)
    return client


def _url(name, *args):
    return reverse(f"admin:notifications_{name}", args=args)


def _add_form(org, **overrides):
    data = {
        "organization": str(org.pk),
        "name": "ops",
        "kind": "webhook",
        "new_target": "https://hooks.example.com/in",
        "signing_secret": "",
        "events": [Event.RUN_FAILED],
        "is_active": "on",
    }
    data.update(overrides)
    return data


def test_pages_load_for_superuser(admin_client_, org, make_channel):
    channel, _ = make_channel(ChannelKind.SLACK, SLACK_URL)
    (notification,), (delivery,) = services.emit(
        Event.RUN_FAILED, {"title": "t"}, organization=org, channels=[channel], users=[org.memberships.first().user]
    )
    for url in (
        _url("channel_changelist"),
        _url("channel_add"),
        _url("channel_change", channel.pk),
        _url("channel_history", channel.pk),
        _url("notification_changelist"),
        _url("notification_change", notification.pk),
        _url("delivery_changelist"),
        _url("delivery_change", delivery.pk),
        _url("channel_changelist") + "?q=slack&kind__exact=slack",
        _url("delivery_changelist") + "?status__exact=pending",
        _url("notification_changelist") + "?read=no",
    ):
        response = admin_client_.get(url)
        assert response.status_code == 200, url


def test_notification_and_delivery_admins_are_read_only(admin_client_, org, make_channel):
    channel, _ = make_channel()
    (notification,), (delivery,) = services.emit(
        Event.RUN_FAILED, {}, organization=org, channels=[channel], users=[org.memberships.first().user]
    )
    assert admin_client_.get(_url("notification_add")).status_code == 403
    assert admin_client_.get(_url("delivery_add")).status_code == 403
    response = admin_client_.post(_url("delivery_change", delivery.pk), {"status": "succeeded"})
    assert response.status_code == 403
    assert Delivery.objects.get(pk=delivery.pk).status == DeliveryStatus.PENDING
    page = admin_client_.get(_url("notification_change", notification.pk)).content.decode()
    assert 'name="_save"' not in page


def test_add_form_creates_a_webhook_through_the_service_and_shows_the_secret_once(admin_client_, org, superuser):
    response = admin_client_.post(_url("channel_add"), _add_form(org), follow=True)
    assert response.redirect_chain and response.redirect_chain[0][1] == 302, response.content.decode()[:2000]
    channel = Channel.objects.get(name="ops")
    assert channel.kind == ChannelKind.WEBHOOK and channel.events == [Event.RUN_FAILED]
    assert channel.secret_fingerprint.startswith("sha256:")
    record = channel.history.get()
    assert record.history_user == superuser and record.history_change_reason == "channel created"

    shown = [str(m) for m in response.context["messages"] if "shown once" in str(m)]
    assert len(shown) == 1
    secret = shown[0].rsplit(": ", 1)[1]
    from apps.core import crypto

    assert crypto.decrypt(channel.secret_ciphertext) == secret
    assert response.content.decode().count(secret) == 1
    for url in (_url("channel_changelist"), _url("channel_change", channel.pk), _url("channel_history", channel.pk)):
        assert secret not in admin_client_.get(url).content.decode()


def test_add_form_refuses_bad_input_as_form_errors_and_writes_nothing(admin_client_, org):
    cases = [
        (_add_form(org, new_target="ftp://nope"), "target"),
        (_add_form(org, kind="email", new_target="not-an-email"), "address"),
        (_add_form(org, signing_secret="short"), "16 characters"),
        (_add_form(org, kind="slack", new_target=""), "incoming-webhook URL"),
        (_add_form(org, kind="email", new_target="a@example.com", signing_secret="s" * 20), "not signed"),
        (_add_form(org, name="bad\x00name"), "Null characters"),
    ]
    for data, message in cases:
        response = admin_client_.post(_url("channel_add"), data)
        assert response.status_code == 200, data
        page = response.content.decode()
        assert "errornote" in page and message in page, (data, message)
        if data.get("signing_secret"):
            assert data["signing_secret"] not in page
    assert not Channel.objects.exists()


def test_add_form_never_renders_a_submitted_slack_url_back(admin_client_, org, make_channel):
    make_channel(name="ops")
    response = admin_client_.post(_url("channel_add"), _add_form(org, kind="slack", new_target=SLACK_URL))
    assert response.status_code == 200  # duplicate name: the form comes back
    page = response.content.decode()
    assert "errornote" in page
    for fragment in SECRET_FRAGMENTS:
        assert fragment not in page
    assert Channel.objects.count() == 1


def test_slack_url_never_appears_in_admin_pages_or_history(admin_client_, org, org_admin, make_channel):
    response = admin_client_.post(_url("channel_add"), _add_form(org, kind="slack", new_target=SLACK_URL))
    assert response.status_code == 302
    channel = Channel.objects.get(name="ops")
    change = _url("channel_change", channel.pk)
    rotated = SLACK_URL.replace("xoxb", "rotated")
    response = admin_client_.post(
        change, {"name": "ops-renamed", "new_target": rotated, "signing_secret": "", "is_active": "on"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    services.channel_update(actor=org_admin, channel=channel, is_active=False)

    from apps.core import crypto

    channel.refresh_from_db()
    assert crypto.decrypt(channel.secret_ciphertext) == rotated
    pages = [
        admin_client_.get(_url("channel_changelist")),
        admin_client_.get(change),
        admin_client_.get(_url("channel_history", channel.pk)),
    ]
    for record in channel.history.all():
        pages.append(admin_client_.get(_url("channel_simple_history", channel.pk, record.history_id)))
    for page in pages[:2]:
        assert "https://hooks.slack.example/…" in page.content.decode()
    for page in pages:
        assert page.status_code == 200
        text = page.content.decode()
        for fragment in (*SECRET_FRAGMENTS, "rotatedAdminToken999"):
            assert fragment not in text

    history_model = Channel.history.model
    rows = list(history_model.objects.filter(id=channel.pk).values())
    assert len(rows) == 3
    for row in rows:
        assert "secret_ciphertext" not in row
        for value in row.values():
            for fragment in (*SECRET_FRAGMENTS, "rotatedAdminToken999"):
                assert fragment not in str(value)


def test_change_form_keeps_target_and_secret_when_left_blank(admin_client_, org, make_channel):
    channel, generated = make_channel(ChannelKind.WEBHOOK, "https://hooks.example.com/keep")
    page = admin_client_.get(_url("channel_change", channel.pk)).content.decode()
    assert generated not in page
    assert 'value="https://hooks.example.com/keep"' not in page
    response = admin_client_.post(
        _url("channel_change", channel.pk),
        {"name": "renamed", "new_target": "", "signing_secret": "", "events": [Event.RUN_FAILED]},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    channel.refresh_from_db()
    from apps.core import crypto

    assert channel.name == "renamed" and channel.is_active is False
    assert channel.target == "https://hooks.example.com/keep"
    assert crypto.decrypt(channel.secret_ciphertext) == generated
    assert channel.events == [Event.RUN_FAILED]


def test_change_form_refuses_a_taken_name(admin_client_, org, make_channel):
    make_channel(name="taken")
    channel, _ = make_channel(name="mine")
    response = admin_client_.post(
        _url("channel_change", channel.pk), {"name": "taken", "new_target": "", "signing_secret": "", "is_active": "on"}
    )
    assert response.status_code == 200 and "errornote" in response.content.decode()
    assert Channel.objects.get(pk=channel.pk).name == "mine"


def test_delete_goes_through_the_service(admin_client_, org, superuser, make_channel):
    channel, _ = make_channel()
    response = admin_client_.post(_url("channel_delete", channel.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Channel.objects.exists()
    assert channel.history.latest().history_user == superuser


def test_retry_now_action_requeues_failed_deliveries(
    admin_client_, org, make_channel, monkeypatch, django_capture_on_commit_callbacks
):
    channel, _ = make_channel()
    now = timezone.now()
    failed = Delivery.objects.create(
        channel=channel,
        event=Event.RUN_FAILED,
        payload={},
        status=DeliveryStatus.FAILED,
        attempts=8,
        next_attempt_at=now,
    )
    done = Delivery.objects.create(
        channel=channel, event=Event.RUN_FAILED, payload={}, status=DeliveryStatus.SUCCEEDED, attempts=1,
        next_attempt_at=now,
    )  # fmt: skip
    from apps.notifications import tasks

    sent = []
    monkeypatch.setattr(tasks.deliver, "apply_async", lambda args, countdown=None: sent.append(args[0]))
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client_.post(
            _url("delivery_changelist"), {"action": "retry_now", "_selected_action": [failed.pk, done.pk]}, follow=True
        )
    assert response.status_code == 200
    failed.refresh_from_db()
    done.refresh_from_db()
    assert (failed.status, failed.attempts) == (DeliveryStatus.PENDING, 0)
    assert done.status == DeliveryStatus.SUCCEEDED
    assert sent == [failed.pk]
    text = " ".join(str(m) for m in response.context["messages"])
    assert "1 delivery(ies) queued" in text and "1 delivery(ies) skipped" in text


def test_staff_org_admin_sees_only_own_organization(org, org_admin, other_org, other_owner, make_channel):
    from django.contrib.auth.models import Permission

    make_channel(name="mine")
    theirs, _ = make_channel(name="theirs", organization=other_org, actor=other_owner)
    org_admin.user_permissions.add(*Permission.objects.filter(content_type__app_label="notifications"))
    client = Client()
    client.force_login(org_admin)
    page = client.get(_url("channel_changelist")).content.decode()
    assert "mine" in page and "theirs" not in page
    assert client.get(_url("channel_change", theirs.pk)).status_code == 302  # "doesn't exist" redirect
    assert Notification.objects.count() == 0
