"""Credentials against a real authenticated Git server (Git's dumb HTTP protocol on loopback,
behind HTTP basic auth): the right token fetches, a wrong one is a clear "authentication failed" on
the repository with no version, and the token appears in no error, row, log or task argument."""

import logging

import pytest

from apps.pipelines.models import PipelineVersion
from apps.repositories import services
from apps.repositories.models import SyncState
from apps.secrets import services as secret_services
from tests.egress_support import allow_loopback  # noqa: F401  (fixture)

from .conftest import DEFINITION, TOKEN_VALUE, sync

pytestmark = pytest.mark.django_db


@pytest.fixture
def git_server(serve_git):
    return serve_git(TOKEN_VALUE)


def _publish(origin):
    origin.commit_graph("a")
    origin.push()
    origin.git("--git-dir", str(origin.bare), "update-server-info")


def test_the_right_token_fetches_and_a_wrong_one_fails_clearly(
    allow_loopback,  # noqa: F811
    org,
    org_admin,
    plain_pipeline,
    origin,
    git_server,
    git_secrets,
    caplog,
):
    caplog.set_level(logging.DEBUG)
    _publish(origin)
    wrong = secret_services.secret_create(actor=org_admin, organization=org, name="wrong", value="ghp-wrong-value")
    repository = services.repository_create(
        actor=org_admin, pipeline=plain_pipeline, clone_url=git_server, definition_path=DEFINITION, credential=wrong
    )
    status = sync(repository)
    assert status.state == SyncState.FAILED and status.error.startswith("Authentication failed"), status.error
    assert not PipelineVersion.objects.filter(pipeline=plain_pipeline).exists()

    services.repository_update(actor=org_admin, repository=repository, credential=None)
    status = sync(repository)
    assert status.state == SyncState.FAILED and status.error.startswith("Authentication failed"), status.error

    services.repository_update(actor=org_admin, repository=repository, credential=git_secrets["token"])
    status = sync(repository)
    assert (status.state, status.versions_created) == (SyncState.OK, 1), status.error
    assert TOKEN_VALUE not in caplog.text and "ghp-wrong-value" not in caplog.text


def test_an_unreadable_credential_is_a_clear_error(org, org_admin, plain_pipeline, origin):
    missing = secret_services.secret_create(
        actor=org_admin, organization=org, name="from_env", provider="env", reference="PNX_SECRET_NOPE_GIT"
    )
    _publish(origin)
    repository = services.repository_create(
        actor=org_admin, pipeline=plain_pipeline, clone_url=origin.url, definition_path=DEFINITION, credential=missing
    )
    status = sync(repository)
    assert status.state == SyncState.FAILED and "credential 'from_env'" in status.error
    assert not PipelineVersion.objects.filter(pipeline=plain_pipeline).exists()


def test_a_remote_that_never_answers_is_stopped_by_the_time_limit(
    allow_loopback,  # noqa: F811
    org_admin,
    plain_pipeline,
    settings,
):
    import socket

    settings.GIT_TIMEOUT_SECONDS = 2
    with socket.socket() as silent:  # accepts connections (the backlog) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(4)
        repository = services.repository_create(
            actor=org_admin,
            pipeline=plain_pipeline,
            clone_url=f"http://127.0.0.1:{silent.getsockname()[1]}/origin.git",
            definition_path=DEFINITION,
        )
        status = sync(repository)
    assert status.state == SyncState.FAILED and status.error.startswith("The fetch timed out"), status.error
    assert not PipelineVersion.objects.filter(pipeline=plain_pipeline).exists()
