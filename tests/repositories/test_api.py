"""The repositories API: CRUD with ETag and If-Match, secrets by name and shown as references, bad
input naming the field (nothing written), who may do what, "sync now", and versions from Git
that no endpoint lets anyone edit."""

import pytest
from django.urls import reverse

from apps.pipelines.models import PipelineVersion
from apps.repositories.models import Repository
from tests.approvals.service_helpers import changed_graph

from .conftest import DEFINITION, TOKEN_VALUE, WEBHOOK_KEY

pytestmark = pytest.mark.django_db

LIST = "/api/v1/repositories/"


def body(pipeline, origin, **extra):
    return {"pipeline": pipeline.pk, "clone_url": origin.url, "definition_path": DEFINITION, **extra}


def test_create_read_update_delete_with_etag(api, org_admin, plain_pipeline, origin, git_secrets):
    client = api(org_admin)
    created = client.post(
        LIST, body(plain_pipeline, origin, credential="git_token", webhook_secret="git_webhook"), format="json"
    )
    assert created.status_code == 201, created.content
    data = created.json()
    assert data["credential"] == "secret://git_token" and data["webhook_secret"] == "secret://git_webhook"
    assert data["sync"]["state"] == "never"
    assert data["webhook_url"] == reverse("repository-webhook", kwargs={"pk": data["id"]})
    assert TOKEN_VALUE not in created.content.decode() and WEBHOOK_KEY not in created.content.decode()

    url = f"{LIST}{data['id']}/"
    read = client.get(url)
    etag = read["ETag"]
    stale = client.patch(url, {"default_branch": "trunk"}, format="json", HTTP_IF_MATCH='"nope"')
    assert stale.status_code == 412
    changed = client.patch(url, {"default_branch": "trunk"}, format="json", HTTP_IF_MATCH=etag)
    assert changed.status_code == 200 and changed.json()["default_branch"] == "trunk"
    assert changed["ETag"] != etag
    assert client.get(LIST).json()["results"][0]["id"] == data["id"]
    assert client.delete(url).status_code == 204
    assert not Repository.objects.exists()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"clone_url": "https://user:hunter2@github.com/acme/orders.git"}, "clone_url"),
        ({"clone_url": "ext::sh -c touch% /tmp/pwned"}, "clone_url"),
        ({"clone_url": "https://169.254.169.254/latest"}, "clone_url"),
        ({"clone_url": "-uhttps://github.com/x"}, "clone_url"),
        ({"definition_path": "../etc/passwd.yaml"}, "definition_path"),
        ({"definition_path": "/abs.yaml"}, "definition_path"),
        ({"definition_path": "pipeline.txt"}, "definition_path"),
        ({"default_branch": "--upload-pack=x"}, "default_branch"),
        ({"credential": "no_such_secret"}, "credential"),
        ({"pipeline": 999999}, "pipeline"),
    ],
)
def test_bad_input_names_the_field_and_writes_nothing(api, org_admin, plain_pipeline, origin, extra, field):
    response = api(org_admin).post(LIST, {**body(plain_pipeline, origin), **extra}, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.json()
    assert not Repository.objects.exists()


def test_file_urls_only_where_settings_allow_them(api, org_admin, plain_pipeline, origin, settings):
    settings.GIT_ALLOW_LOCAL_URLS = False
    response = api(org_admin).post(LIST, body(plain_pipeline, origin), format="json")
    assert response.status_code == 400 and "clone_url" in response.json()["error"]["fields"]


def test_who_may_do_what(api, org_admin, members, outsider, plain_pipeline, origin, monkeypatch):
    developer = members["developer"]
    refused = api(developer).post(LIST, body(plain_pipeline, origin), format="json")
    assert refused.status_code == 403
    created = api(org_admin).post(LIST, body(plain_pipeline, origin), format="json").json()
    url = f"{LIST}{created['id']}/"
    assert api(developer).get(url).status_code == 200
    assert api(developer).patch(url, {"default_branch": "x"}, format="json").status_code == 403
    assert api(outsider).get(url).status_code == 404
    assert api(outsider).post(f"{url}sync/").status_code == 404
    queued = []
    monkeypatch.setattr("apps.repositories.services._enqueue_sync", queued.append)
    with_sync = api(developer).post(f"{url}sync/")
    assert with_sync.status_code == 202 and with_sync.json()["requested_at"]


def test_a_duplicate_repository_is_409(api, org_admin, plain_pipeline, origin):
    assert api(org_admin).post(LIST, body(plain_pipeline, origin), format="json").status_code == 201
    assert api(org_admin).post(LIST, body(plain_pipeline, origin), format="json").status_code == 409


def test_versions_from_git_say_so_and_cannot_be_edited(api, org_admin, plain_pipeline, origin):
    from apps.repositories import services

    from .conftest import sync

    repository = services.repository_create(
        actor=org_admin, pipeline=plain_pipeline, clone_url=origin.url, definition_path=DEFINITION
    )
    origin.commit_graph("a")
    origin.push()
    sync(repository)
    version = PipelineVersion.objects.get(pipeline=plain_pipeline)
    url = f"/api/v1/pipelines/{plain_pipeline.pk}/versions/{version.number}/"
    shown = api(org_admin).get(url).json()
    assert shown["from_git"] is True and shown["provenance"] == "from Git"
    assert shown["git_commit"] == origin.git("rev-parse", "HEAD")
    for method in ("patch", "put", "delete"):
        response = getattr(api(org_admin), method)(url, {"git_merged": False, "git_commit": "abcdef1"}, format="json")
        assert response.status_code == 405
    version.git_commit = "abcdef1"
    with pytest.raises(Exception, match="immutable"):
        version.save()
    assert PipelineVersion.objects.get(pk=version.pk).git_commit == shown["git_commit"]
    hand_made = api(org_admin).post(
        f"/api/v1/pipelines/{plain_pipeline.pk}/versions/",
        {"graph": changed_graph("hand"), "git_merged": True, "git_commit": "abcdef1"},
        format="json",
    )
    assert hand_made.status_code == 201, hand_made.content
    assert hand_made.json()["provenance"] == "not from Git" and hand_made.json()["from_git"] is False
