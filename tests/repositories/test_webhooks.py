"""Provider webhooks with GitHub- and GitLab-shaped deliveries: a good one queues a sync (once per
delivery id), a bad or missing signature or token is 401 and writes nothing, a replay queues nothing."""

import hashlib
import hmac
import json

import pytest
from django.urls import reverse

from apps.repositories.models import RepositorySync, WebhookDelivery

from .conftest import WEBHOOK_KEY

pytestmark = pytest.mark.django_db

PUSH = {"ref": "refs/heads/main", "before": "0" * 40, "after": "a" * 40, "repository": {"full_name": "acme/orders"}}


def github(client, repository, body: dict, *, key=WEBHOOK_KEY, delivery="d-1", event="push", signature=None):
    raw = json.dumps(body).encode()
    signature = signature or "sha256=" + hmac.new(key.encode(), raw, hashlib.sha256).hexdigest()
    return client.post(
        reverse("repository-webhook", kwargs={"pk": repository.pk}),
        raw,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256=signature,
        HTTP_X_GITHUB_DELIVERY=delivery,
        HTTP_X_GITHUB_EVENT=event,
    )


def gitlab(client, repository, body: dict, *, token=WEBHOOK_KEY, delivery="u-1", event="Push Hook"):
    return client.post(
        reverse("repository-webhook", kwargs={"pk": repository.pk}),
        json.dumps(body),
        content_type="application/json",
        HTTP_X_GITLAB_TOKEN=token,
        HTTP_X_GITLAB_EVENT_UUID=delivery,
        HTTP_X_GITLAB_EVENT=event,
    )


def nothing_written(repository):
    assert not WebhookDelivery.objects.exists()
    assert RepositorySync.objects.get(repository=repository).requested_at is None


def test_a_signed_github_push_queues_one_sync_and_a_replay_none(
    client, hooked, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr("apps.repositories.services._enqueue_sync", queued.append)
    with django_capture_on_commit_callbacks(execute=True):
        response = github(client, hooked, PUSH)
    assert response.status_code == 202 and response.json() == {"status": "queued"}
    assert queued == [hooked.pk]
    assert RepositorySync.objects.get(repository=hooked).requested_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        replay = github(client, hooked, PUSH)
    assert replay.status_code == 200 and replay.json() == {"status": "duplicate"}
    assert queued == [hooked.pk] and WebhookDelivery.objects.count() == 1
    tag = github(client, hooked, {**PUSH, "ref": "refs/tags/v1"}, delivery="d-2")
    assert tag.status_code == 202
    ping = github(client, hooked, {"zen": "hi"}, delivery="d-3", event="ping")
    assert ping.status_code == 200 and ping.json() == {"status": "ignored"}
    assert WebhookDelivery.objects.count() == 2


def test_gitlab_push_and_tag_events(client, hooked, monkeypatch):
    monkeypatch.setattr("apps.repositories.services._enqueue_sync", lambda pk: None)
    assert gitlab(client, hooked, {"object_kind": "push", **PUSH}).status_code == 202
    assert gitlab(client, hooked, {"object_kind": "push"}).json() == {"status": "duplicate"}
    assert gitlab(client, hooked, {"object_kind": "tag_push"}, delivery="u-2", event="Tag Push Hook").status_code == 202
    assert list(WebhookDelivery.objects.values_list("provider", flat=True)) == ["gitlab", "gitlab"]


@pytest.mark.parametrize(
    "send",
    [
        lambda c, r: github(c, r, PUSH, key="not-the-key"),
        lambda c, r: github(c, r, PUSH, signature="sha256=" + "0" * 64),
        lambda c, r: github(c, r, PUSH, signature="sha1=abc"),
        lambda c, r: gitlab(c, r, PUSH, token="not-the-token"),
        lambda c, r: c.post(reverse("repository-webhook", kwargs={"pk": r.pk}), PUSH, content_type="application/json"),
    ],
    ids=["github-wrong-key", "github-wrong-digest", "github-malformed", "gitlab-wrong-token", "unsigned"],
)
def test_a_bad_signature_is_401_and_writes_nothing(client, hooked, send):
    response = send(client, hooked)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "webhook_unauthorized"
    assert WEBHOOK_KEY not in response.content.decode()
    nothing_written(hooked)


def test_a_repository_without_a_webhook_secret_or_an_unknown_id_is_401(client, hooked, org_admin):
    from apps.repositories import services

    services.repository_update(actor=org_admin, repository=hooked, webhook_secret=None)
    assert github(client, hooked, PUSH).status_code == 401
    hooked.pk = 999999
    assert github(client, hooked, PUSH).status_code == 401
    assert not WebhookDelivery.objects.exists()


def test_a_delivery_without_an_id_is_400(client, hooked):
    response = github(client, hooked, PUSH, delivery="")
    assert response.status_code == 400
    nothing_written(hooked)
