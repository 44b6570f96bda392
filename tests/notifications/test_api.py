"""REST API for channels and the in-app inbox."""

import pytest

from apps.notifications import services
from apps.notifications.models import Channel, ChannelKind, Event, Notification
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Role

pytestmark = pytest.mark.django_db

CHANNELS = "/api/v1/notification-channels/"
INBOX = "/api/v1/notifications/"
SLACK_URL = "https://hooks.slack.example/services/T0AAA/B0BBB/xoxbSecretToken123"


def _error_fields(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"].get("fields", {})


# --- channels: happy paths ------------------------------------------------------------------


def test_admin_creates_webhook_and_gets_the_generated_secret_once(api, org, org_admin):
    client = api(org_admin)
    response = client.post(
        CHANNELS,
        {"organization": "acme", "name": "ops hook", "kind": "webhook", "target": "https://hooks.example.com/in",
         "events": [Event.RUN_FAILED, Event.PROMOTION_DEPLOYED]},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201, response.content
    secret = response.json()["signing_secret"]
    assert secret and len(secret) >= 32
    created = response.json()["channel"]
    assert created["kind"] == "webhook" and created["has_secret"] is True
    assert created["events"] == sorted([Event.RUN_FAILED, Event.PROMOTION_DEPLOYED])
    assert created["secret_fingerprint"].startswith("sha256:")
    channel = Channel.objects.get(pk=created["id"])
    assert channel.history.get().history_user == org_admin

    for response in (client.get(CHANNELS), client.get(f"{CHANNELS}{channel.pk}/")):
        assert response.status_code == 200
        assert secret not in response.content.decode()
        assert "signing_secret" not in response.content.decode()


def test_given_signing_secret_is_never_returned(api, org, org_admin):
    client = api(org_admin)
    given = "my-own-signing-secret-0123456789"
    response = client.post(
        CHANNELS,
        {"organization": "acme", "name": "h", "kind": "webhook", "target": "https://x.example.com/in",
         "signing_secret": given},
        format="json",
    )  # fmt: skip
    assert response.status_code == 201
    assert response.json()["signing_secret"] is None
    assert given not in response.content.decode()
    channel_id = response.json()["channel"]["id"]
    patched = client.patch(f"{CHANNELS}{channel_id}/", {"signing_secret": "z" * 32}, format="json")
    assert patched.status_code == 200 and "z" * 32 not in patched.content.decode()


def test_slack_url_never_appears_in_responses(api, org, org_admin):
    client = api(org_admin)
    response = client.post(
        CHANNELS, {"organization": "acme", "name": "slack", "kind": "slack", "target": SLACK_URL}, format="json"
    )
    assert response.status_code == 201, response.content
    channel_id = response.json()["channel"]["id"]
    assert response.json()["channel"]["target"] == "https://hooks.slack.example/…"
    new_url = SLACK_URL.replace("xoxb", "rotated")
    responses = [
        response,
        client.get(CHANNELS),
        client.get(f"{CHANNELS}{channel_id}/"),
        client.patch(f"{CHANNELS}{channel_id}/", {"target": new_url, "name": "slack2"}, format="json"),
        client.get(f"{CHANNELS}?search=slack"),
        client.post(CHANNELS, {"organization": "acme", "name": "slack2", "kind": "slack", "target": SLACK_URL},
                    format="json"),  # a refused duplicate must not echo the URL either
    ]  # fmt: skip
    assert [r.status_code for r in responses] == [201, 200, 200, 200, 200, 400]
    for r in responses:
        text = r.content.decode()
        assert "xoxbSecretToken123" not in text and "rotatedSecretToken123" not in text
        assert "/services/" not in text


def test_admin_updates_and_deletes(api, org, org_admin, make_channel):
    channel, _ = make_channel(ChannelKind.EMAIL, "ops@example.com")
    client = api(org_admin)
    response = client.patch(
        f"{CHANNELS}{channel.pk}/", {"target": "a@example.com, b@example.com", "is_active": False}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["target"] == "a@example.com,b@example.com" and response.json()["is_active"] is False
    assert client.delete(f"{CHANNELS}{channel.pk}/").status_code == 204
    assert not Channel.objects.filter(pk=channel.pk).exists()
    assert channel.history.latest().history_type == "-"


# --- channels: bad input --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"kind": "sms"}, "kind"),
        ({"kind": "webhook", "target": "ftp://files.example.com/x"}, "target"),
        ({"kind": "webhook", "target": "http://example.com:99999/x"}, "target"),
        ({"kind": "slack", "target": "hooks.slack.example/services/x"}, "target"),
        ({"kind": "email", "target": "ops@example.com,not-an-email"}, "target"),
        ({"events": ["run.exploded"]}, "events"),
        ({"colour": "red"}, "colour"),
        ({"name": "ops\x00hook"}, "name"),
        ({"target": "https://x.example.com/\x00"}, "target"),
        ({"signing_secret": "short"}, "signing_secret"),
        ({"kind": "email", "target": "ops@example.com", "signing_secret": "s" * 20}, "signing_secret"),
        ({"organization": "no-such-org"}, "organization"),
        ({"name": ""}, "name"),
    ],
)
def test_create_bad_input_is_400_naming_the_field_and_writes_nothing(api, org, org_admin, body, field):
    payload = {"organization": "acme", "name": "ops", "kind": "webhook", "target": "https://x.example.com/in", **body}
    response = api(org_admin).post(CHANNELS, payload, format="json")
    assert response.status_code == 400, response.content
    fields = _error_fields(response)
    assert any(name == field or name.startswith(f"{field}.") for name in fields), fields
    assert response.json()["error"]["code"] == "validation_error"
    assert not Channel.objects.exists()


def test_duplicate_name_is_400_and_nothing_changes(api, org, org_admin, make_channel):
    make_channel(name="ops")
    response = api(org_admin).post(
        CHANNELS, {"organization": "acme", "name": "ops", "kind": "email", "target": "a@example.com"}, format="json"
    )
    assert response.status_code == 400
    assert Channel.objects.count() == 1


def test_patch_bad_input_changes_nothing(api, org, org_admin, make_channel):
    channel, _ = make_channel(ChannelKind.SLACK, SLACK_URL, events=[Event.RUN_FAILED])
    before = Channel.objects.values().get(pk=channel.pk)
    client = api(org_admin)
    for body, field in [
        ({"target": "not a url"}, "target"),
        ({"events": ["nope"]}, "events"),
        ({"kind": "email"}, "kind"),
        ({"signing_secret": "s" * 20}, "signing_secret"),
        ({"name": "x\x00"}, "name"),
    ]:
        response = client.patch(f"{CHANNELS}{channel.pk}/", body, format="json")
        assert response.status_code == 400, (body, response.content)
        assert any(name == field or name.startswith(f"{field}.") for name in _error_fields(response))
    assert Channel.objects.values().get(pk=channel.pk) == before


def test_malformed_json_is_400(api, org, org_admin):
    response = api(org_admin).post(CHANNELS, data="{not json", content_type="application/json")
    assert response.status_code == 400
    assert "error" in response.json()


# --- channels: permissions ------------------------------------------------------------------


def test_plain_member_sees_but_cannot_manage_channels(api, org, members, make_channel):
    channel, _ = make_channel()
    client = api(members["developer"])
    assert [c["id"] for c in client.get(CHANNELS).json()["results"]] == [channel.pk]
    response = client.post(
        CHANNELS, {"organization": "acme", "name": "mine", "kind": "email", "target": "a@example.com"}, format="json"
    )
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    assert client.patch(f"{CHANNELS}{channel.pk}/", {"name": "mine"}, format="json").status_code == 403
    assert client.delete(f"{CHANNELS}{channel.pk}/").status_code == 403
    assert list(Channel.objects.values_list("name", flat=True)) == [channel.name]


def test_outsider_sees_nothing(api, org, outsider, make_channel):
    channel, _ = make_channel()
    client = api(outsider)
    response = client.get(CHANNELS)
    assert response.status_code == 200 and response.json()["results"] == []
    assert client.get(f"{CHANNELS}{channel.pk}/").status_code == 404
    assert client.patch(f"{CHANNELS}{channel.pk}/", {"name": "x"}, format="json").status_code == 404
    assert client.delete(f"{CHANNELS}{channel.pk}/").status_code == 404
    response = client.post(
        CHANNELS, {"organization": "acme", "name": "x", "kind": "email", "target": "a@example.com"}, format="json"
    )
    # Another organization's slug is answered like an unknown one (slugs cannot be probed).
    assert response.status_code == 400 and "organization" in response.json()["error"]["fields"]
    assert Channel.objects.count() == 1


def test_anonymous_is_refused(api, org, make_channel):
    make_channel()
    response = api().get(CHANNELS)
    assert response.status_code in (401, 403)
    assert "error" in response.json()


def test_run_only_key_cannot_create_channels(api, org, run_key):
    _, token = run_key
    response = api(token=token).post(
        CHANNELS, {"organization": "acme", "name": "x", "kind": "email", "target": "a@example.com"}, format="json"
    )
    assert response.status_code == 403
    assert not Channel.objects.exists()


def test_channel_list_query_count_does_not_grow_with_rows(
    api, org, org_admin, make_channel, django_assert_max_num_queries
):
    for i in range(12):
        make_channel(ChannelKind.SLACK if i % 2 else ChannelKind.WEBHOOK, f"https://h{i}.example.com/services/x")
    client = api(org_admin)
    with django_assert_max_num_queries(8):
        response = client.get(CHANNELS)
    assert response.status_code == 200 and response.json()["count"] == 12


# --- inbox ----------------------------------------------------------------------------------


@pytest.fixture
def inbox(org, org_admin, members):
    developer = members["developer"]
    services.emit(Event.RUN_FAILED, {"title": "first"}, organization=org, users=[developer, org_admin])
    services.emit(Event.RUN_SUCCEEDED, {"title": "second"}, organization=org, users=[developer])
    return developer


def test_user_sees_only_own_notifications(api, org_admin, inbox):
    response = api(inbox).get(INBOX)
    assert response.status_code == 200
    results = response.json()["results"]
    assert {r["title"] for r in results} == {"first", "second"}
    assert Notification.objects.filter(pk__in=[r["id"] for r in results]).exclude(user=inbox).count() == 0
    assert [r["title"] for r in api(org_admin).get(INBOX).json()["results"]] == ["first"]


def test_mark_read_and_unread_filter(api, inbox):
    client = api(inbox)
    first = Notification.objects.get(user=inbox, title="first")
    response = client.post(f"{INBOX}{first.pk}/mark-read/")
    assert response.status_code == 200 and response.json()["read_at"] is not None
    unread = client.get(f"{INBOX}?unread=true").json()["results"]
    assert [r["title"] for r in unread] == ["second"]


def test_mark_all_read_marks_only_own(api, org_admin, inbox):
    response = api(inbox).post(f"{INBOX}mark-all-read/")
    assert response.status_code == 200 and response.json() == {"marked": 2}
    assert not Notification.objects.filter(user=inbox, read_at__isnull=True).exists()
    assert Notification.objects.get(user=org_admin).read_at is None


def test_another_users_notification_is_404(api, org_admin, inbox):
    theirs = Notification.objects.get(user=org_admin)
    client = api(inbox)
    assert client.get(f"{INBOX}{theirs.pk}/").status_code == 404
    assert client.post(f"{INBOX}{theirs.pk}/mark-read/").status_code == 404
    assert Notification.objects.get(pk=theirs.pk).read_at is None


def test_api_key_marks_all_read_only_in_its_organization(api, org, org_admin, members, other_org, other_owner):
    tenancy_services.membership_add(actor=other_owner, organization=other_org, user=org_admin, role=Role.MEMBER)
    services.emit(Event.RUN_FAILED, {"title": "acme"}, organization=org, users=[org_admin])
    services.emit(Event.RUN_FAILED, {"title": "globex"}, organization=other_org, users=[org_admin])
    _, token = tenancy_services.api_key_create(actor=org_admin, organization=org, name="mine", scopes=["read", "write"])
    client = api(token=token)
    assert [r["title"] for r in client.get(INBOX).json()["results"]] == ["acme"]
    response = client.post(f"{INBOX}mark-all-read/")
    assert response.status_code == 200 and response.json() == {"marked": 1}
    assert Notification.objects.get(title="globex").read_at is None


def test_inbox_query_count(api, org, inbox, django_assert_max_num_queries):
    for i in range(10):
        services.emit(Event.RUN_FAILED, {"title": f"n{i}"}, organization=org, users=[inbox])
    client = api(inbox)
    with django_assert_max_num_queries(6):
        response = client.get(INBOX)
    assert len(response.json()["results"]) == 12 and "count" not in response.json()
