"""Real Git repositories for the tests: a bare "origin" and a working clone in the test's folder,
real commits, merges, tags and force-pushes through the `git` executable; a repository row that
syncs the pipeline of the promotion fixtures from origin through a file:// URL."""

import base64
import copy
import json
import os
import subprocess
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from apps.repositories import services
from tests.approvals.conftest import prod_approver2, promo  # noqa: F401  (fixtures)
from tests.approvals.service_helpers import changed_graph
from tests.runs.conftest import GRAPH, run_setup  # noqa: F401  (fixtures and data)

DEFINITION = "pipelines/orders.yaml"
GIT_ENV = {
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "Ada Lovelace",
    "GIT_AUTHOR_EMAIL": "ada@example.com",
    "GIT_COMMITTER_NAME": "Ada Lovelace",
    "GIT_COMMITTER_EMAIL": "ada@example.com",
}


class Origin:
    """A bare origin and a working clone to commit and push from."""

    def __init__(self, root: Path):
        self.bare = root / "origin.git"
        self.work = root / "work"
        subprocess.run(["git", "init", "--quiet", "--bare", "-b", "main", str(self.bare)], check=True, env=self._env())
        subprocess.run(["git", "init", "--quiet", "-b", "main", str(self.work)], check=True, env=self._env())
        self.git("remote", "add", "origin", str(self.bare))

    @property
    def url(self) -> str:
        return f"file://{self.bare}"

    @staticmethod
    def _env() -> dict:
        return {**os.environ, **GIT_ENV}

    def git(self, *args: str) -> str:
        done = subprocess.run(["git", *args], cwd=self.work, env=self._env(), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def write(self, path: str, text: str) -> None:
        target = self.work / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    def commit(self, message: str, files: dict[str, str] | None = None, remove=()) -> str:
        for path, text in (files or {}).items():
            self.write(path, text)
        for path in remove:
            self.git("rm", "--quiet", path)
        self.git("add", "--all")
        self.git("commit", "--quiet", "--allow-empty", "-m", message)
        return self.git("rev-parse", "HEAD")

    def commit_graph(self, marker: str, path: str = DEFINITION) -> str:
        return self.commit(f"pipeline {marker}", {path: definition(changed_graph(marker))})

    def push(self, *refs: str, force: bool = False) -> None:
        self.git("push", "--quiet", *(["--force"] if force else []), "origin", *(refs or ("main",)))


def definition(graph: dict) -> str:
    return yaml.safe_dump(graph, sort_keys=False)


@pytest.fixture
def origin(tmp_path) -> Origin:
    return Origin(tmp_path)


@pytest.fixture
def repository(promo, origin):  # noqa: F811
    return services.repository_create(
        actor=promo["org_admin"], pipeline=promo["pipeline"], clone_url=origin.url, definition_path=DEFINITION
    )


def sync(repository):
    status = services.repository_sync(repository.pk)
    assert status is not None
    return status


def graph_json(marker: str) -> str:
    return json.dumps(changed_graph(marker))


def original_graph() -> dict:
    return copy.deepcopy(GRAPH)


WEBHOOK_KEY = "whsec-5b1e0c2d7a9f4e3b8c6d"
TOKEN_VALUE = "ghp-canary-token-4f9d2a7c1e"


@pytest.fixture
def plain_pipeline(org, org_admin, members):
    """A pipeline without the run machinery (API and webhook tests)."""
    from apps.pipelines import services as pipeline_services

    project = pipeline_services.project_create(actor=org_admin, organization=org, name="Git")
    return pipeline_services.pipeline_create(actor=org_admin, project=project, name="Orders")


@pytest.fixture
def git_secrets(org, org_admin):
    from apps.secrets import services as secret_services

    return {
        "token": secret_services.secret_create(actor=org_admin, organization=org, name="git_token", value=TOKEN_VALUE),
        "webhook": secret_services.secret_create(
            actor=org_admin, organization=org, name="git_webhook", value=WEBHOOK_KEY
        ),
    }


@pytest.fixture
def hooked(plain_pipeline, org_admin, origin, git_secrets):
    """A repository of the plain pipeline that takes webhooks."""
    return services.repository_create(
        actor=org_admin,
        pipeline=plain_pipeline,
        clone_url=origin.url,
        definition_path=DEFINITION,
        webhook_secret=git_secrets["webhook"],
    )


class _AuthenticatedGit(SimpleHTTPRequestHandler):
    """Git's dumb HTTP protocol (static files of the bare repository) behind HTTP basic auth."""

    expected = ""

    def do_GET(self):
        if self.headers.get("Authorization") != self.expected:
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="git"')
            self.end_headers()
            return
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def serve_git(origin):
    """serve_git(token) -> the http:// clone URL of origin on loopback, accepting only that token
    (the caller allow-lists loopback and runs `update-server-info` after pushing)."""
    servers = []

    def serve(token: str) -> str:
        handler = type("Handler", (_AuthenticatedGit,), {})
        handler.expected = "Basic " + base64.b64encode(f"x-access-token:{token}".encode()).decode()
        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(handler, directory=str(origin.bare.parent)))
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append((server, thread))
        return f"http://127.0.0.1:{server.server_address[1]}/{origin.bare.name}"

    yield serve
    for server, thread in servers:
        server.shutdown()
        server.server_close()
        thread.join()
