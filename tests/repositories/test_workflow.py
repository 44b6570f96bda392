"""The sync on a real Celery worker: a verified webhook queues it, the worker fetches and imports,
and the beat sweep covers a push whose webhook never arrived."""

import hashlib
import hmac
import json
import time

import pytest
from django.urls import reverse

from apps.pipelines.models import PipelineVersion
from apps.repositories import services
from apps.repositories.models import RepositorySync, SyncState

from .conftest import WEBHOOK_KEY

pytestmark = pytest.mark.django_db(transaction=True)


def _wait_for(predicate, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail("the worker did not finish the sync in time")


def _git_versions(pipeline) -> int:
    return PipelineVersion.objects.filter(pipeline=pipeline, from_git=True).count()


def test_a_webhook_sync_and_the_beat_sweep_run_on_the_worker(celery_worker_thread, client, hooked, origin):
    origin.commit_graph("a")
    origin.push()
    raw = json.dumps({"ref": "refs/heads/main"}).encode()
    response = client.post(
        reverse("repository-webhook", kwargs={"pk": hooked.pk}),
        raw,
        content_type="application/json",
        HTTP_X_HUB_SIGNATURE_256="sha256=" + hmac.new(WEBHOOK_KEY.encode(), raw, hashlib.sha256).hexdigest(),
        HTTP_X_GITHUB_DELIVERY="w-1",
        HTTP_X_GITHUB_EVENT="push",
    )
    assert response.status_code == 202
    _wait_for(lambda: RepositorySync.objects.get(repository=hooked).state == SyncState.OK)
    assert _git_versions(hooked.pipeline) == 1
    status = RepositorySync.objects.get(repository=hooked)
    assert status.requested_at is None and status.head_commit == origin.git("rev-parse", "HEAD")

    origin.commit_graph("b")  # pushed, but its webhook is lost
    origin.push()
    assert services.repositories_sweep() == 1
    _wait_for(lambda: _git_versions(hooked.pipeline) == 2)
