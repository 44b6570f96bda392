"""Invariant: a repository's credential (a token) and its webhook secret never leave the worker's
git call and the webhook check. Both are unique canaries; the repository syncs through a real
authenticated Git server (with the right token and a wrong one), takes signed GitHub and GitLab
deliveries and refused ones, and then everything anyone could see is scanned: the repositories
API and every pipeline-version response, the pipeline and request pages, the admin's changelists,
change and history pages of the repository models, every database row (history tables included),
every log record, every task sent to Celery, and the bare mirror's own configuration."""

import hashlib
import hmac
import json
import logging
import uuid
from unittest import mock

import pytest
from celery.app.task import Task
from django.apps import apps
from django.contrib import admin as django_admin
from django.test import Client
from django.urls import NoReverseMatch, reverse

from apps.repositories import git
from apps.repositories import services as repository_services
from apps.repositories.models import Repository
from apps.secrets import services as secret_services
from tests.egress_support import allow_loopback  # noqa: F401  (fixture)
from tests.repositories.conftest import DEFINITION, origin, serve_git, sync  # noqa: F401  (fixtures)

from .conftest import forms_of

pytestmark = pytest.mark.django_db


def _webhook(client, repository, key_or_token: str, *, provider: str, delivery: str):
    raw = json.dumps({"ref": "refs/heads/main"}).encode()
    url = reverse("repository-webhook", kwargs={"pk": repository.pk})
    if provider == "github":
        signature = "sha256=" + hmac.new(key_or_token.encode(), raw, hashlib.sha256).hexdigest()
        headers = {"HTTP_X_HUB_SIGNATURE_256": signature, "HTTP_X_GITHUB_DELIVERY": delivery}
        headers["HTTP_X_GITHUB_EVENT"] = "push"
    else:
        headers = {"HTTP_X_GITLAB_TOKEN": key_or_token, "HTTP_X_GITLAB_EVENT_UUID": delivery}
        headers["HTTP_X_GITLAB_EVENT"] = "Push Hook"
    return client.post(url, raw, content_type="application/json", **headers)


def test_repository_credentials_never_leave_the_git_call(
    allow_loopback,  # noqa: F811
    org,
    org_admin,
    members,
    origin,  # noqa: F811
    serve_git,  # noqa: F811
    api,
    caplog,
    django_capture_on_commit_callbacks,
):
    caplog.set_level(logging.DEBUG)
    token, key = f"ghp-CANARY-{uuid.uuid4().hex}", f"whk-CANARY-{uuid.uuid4().hex}"
    wrong = f"ghp-WRONG-{uuid.uuid4().hex}"
    from apps.pipelines import services as pipeline_services
    from tests.approvals.service_helpers import changed_graph
    from tests.repositories.conftest import definition

    project = pipeline_services.project_create(actor=org_admin, organization=org, name="Git")
    pipeline = pipeline_services.pipeline_create(actor=org_admin, project=project, name="Orders")
    for name, value in (("git_token", token), ("git_wrong", wrong), ("git_hook", key)):
        secret_services.secret_create(actor=org_admin, organization=org, name=name, value=value)
    origin.commit("pipeline", {DEFINITION: definition(changed_graph("canary"))})
    origin.push()
    origin.git("--git-dir", str(origin.bare), "update-server-info")
    url = serve_git(token)

    client = api(org_admin)
    created = client.post(
        "/api/v1/repositories/",
        {
            "pipeline": pipeline.pk,
            "clone_url": url,
            "definition_path": DEFINITION,
            "credential": "git_wrong",
            "webhook_secret": "git_hook",
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    repository = Repository.objects.get(pk=created.json()["id"])
    seen: list[tuple[str, str]] = [("create", created.content.decode())]
    sent: list[str] = []

    def record_apply_async(task, args=None, kwargs=None, **options):
        sent.append(repr((task.name, args, kwargs, options)))

    with mock.patch.object(Task, "apply_async", record_apply_async):
        failed = sync(repository)
        assert failed.state == "failed" and failed.error.startswith("Authentication failed"), failed.error
        changed = client.patch(f"/api/v1/repositories/{repository.pk}/", {"credential": "git_token"}, format="json")
        seen.append(("patch", changed.content.decode()))
        assert sync(repository).state == "ok"
        web = Client()
        for provider, secret_value in (("github", key), ("gitlab", key)):
            with django_capture_on_commit_callbacks(execute=True):
                good = _webhook(web, repository, secret_value, provider=provider, delivery=f"{provider}-1")
            assert good.status_code == 202, good.content
            bad = _webhook(web, repository, "nope", provider=provider, delivery=f"{provider}-2")
            assert bad.status_code == 401
            seen += [(f"{provider} webhook", good.content.decode() + bad.content.decode())]
        with django_capture_on_commit_callbacks(execute=True):
            seen.append(("sync now", client.post(f"/api/v1/repositories/{repository.pk}/sync/").content.decode()))
    assert sent, "nothing was sent to Celery: the task scan would prove nothing"

    for path in (
        "/api/v1/repositories/",
        f"/api/v1/repositories/{repository.pk}/",
        f"/api/v1/pipelines/{pipeline.pk}/versions/",
        f"/api/v1/pipelines/{pipeline.pk}/versions/1/",
        "/api/v1/secrets/",
        "/api/v1/audit/",
    ):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content[:300])
        seen.append((path, response.content.decode()))
    browser = Client()
    browser.force_login(org_admin)
    seen.append(("pipeline page", browser.get(f"/pipelines/{pipeline.pk}/").content.decode()))
    staff = Client(raise_request_exception=False)
    staff.force_login(org_admin)
    for model in [m for m in django_admin.site._registry if m._meta.app_label in ("repositories", "secrets")]:
        prefix = f"admin:{model._meta.app_label}_{model._meta.model_name}"
        seen.append((prefix, staff.get(reverse(f"{prefix}_changelist")).content.decode()))
        for obj in model.objects.all()[:5]:
            for view in ("change", "history"):
                try:
                    seen.append(
                        (f"{prefix} {view}", staff.get(reverse(f"{prefix}_{view}", args=[obj.pk])).content.decode())
                    )
                except NoReverseMatch:
                    continue
    rows = "\n".join(repr(row) for model in apps.get_models() for row in model.objects.values())
    logs = "\n".join(record.getMessage() for record in caplog.records)
    mirror_config = (git.mirror_path(repository.pk) / "config").read_text()
    assert repository_services.Repository.objects.get(pk=repository.pk).sync.state == "ok"
    for value in (token, key, wrong):
        for form in forms_of(value):
            for label, body in seen:
                assert form not in body, f"a repository secret ({form[:12]}…) leaked in {label}"
            assert form not in rows, "a repository secret is in a database row"
            assert form not in logs, "a repository secret is in a log record"
            assert form not in "\n".join(sent), "a repository secret was sent to Celery"
            assert form not in mirror_config, "a repository secret is in the mirror's config"
