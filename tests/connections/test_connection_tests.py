""" "Test connection" end to end: the API queues a ConnectionTest, a real Celery worker (on the
configured broker) resolves the binding's params, materializes the credential and connects for real."""

import socket
import sqlite3
import threading
import time
from contextlib import closing
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from apps.connections import services
from apps.connections.models import ConnectionTest
from apps.environments import permissions as perms
from apps.secrets import services as secret_services
from apps.variables import services as variable_services
from tests import postgres as pg
from tests.egress_support import sqlite_file

from .conftest import grant

# The HTTP servers and PostgreSQL here listen on 127.0.0.1: the operator's allow-list opens loopback.
pytestmark = [
    pytest.mark.workflow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("allow_loopback", "sqlite_root"),
]

PG_PASSWORD = "CANARY-pg-pass-5e6f7a"
DEADLINE_SECONDS = 60


def finished(test_pk) -> ConnectionTest:
    """Poll (bounded) until the worker has finished the test."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        test = ConnectionTest.objects.get(pk=test_pk)
        if test.status != ConnectionTest.Status.QUEUED:
            return test
        time.sleep(0.2)
    raise AssertionError(f"connection test {test_pk} was not run by the worker within {DEADLINE_SECONDS}s")


def bind(org, org_admin, environment, kind, params, credential=None, name="target"):
    role = services.connection_role_create(actor=org_admin, organization=org, name=name, kind=kind)
    return services.connection_binding_set(
        actor=org_admin, role=role, environment=environment, params=params, credential=credential
    )


def request_test(api, user, binding) -> int:
    response = api(user).post(f"/api/v1/connection-bindings/{binding.pk}/test/")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_sqlite_file_is_ok_and_params_are_interpolated(org, org_admin, stages, api, celery_worker_thread):
    database = sqlite_file(stages["development"], "warehouse.sqlite3")
    with closing(sqlite3.connect(database)) as connection:
        connection.execute("CREATE TABLE orders (id INTEGER)")
        connection.commit()
    data_dir = variable_services.variable_create(actor=org_admin, organization=org, name="data_dir", type="string")
    variable_services.variable_override_set(
        actor=org_admin, variable=data_dir, environment=stages["development"], value=str(database.parent)
    )
    binding = bind(org, org_admin, stages["development"], "sqlite", {"path": "{{ data_dir }}/warehouse.sqlite3"})

    test = finished(request_test(api, org_admin, binding))
    assert test.status == ConnectionTest.Status.OK, test.message
    assert test.message == "Opened SQLite database warehouse.sqlite3."
    assert test.finished_at is not None
    listed = api(org_admin).get(f"/api/v1/connection-bindings/{binding.pk}/tests/").json()
    assert listed[0]["status"] == "ok"


def test_missing_sqlite_file_fails(org, org_admin, stages, api, celery_worker_thread):
    binding = bind(org, org_admin, stages["development"], "sqlite", {"path": "absent.sqlite3"})
    test = finished(request_test(api, org_admin, binding))
    assert test.status == ConnectionTest.Status.FAILED
    assert "No SQLite database" in test.message


def test_unresolvable_params_fail(org, org_admin, stages, api, celery_worker_thread):
    binding = bind(org, org_admin, stages["development"], "sqlite", {"path": "{{ nowhere_dir }}/x.sqlite3"})
    test = finished(request_test(api, org_admin, binding))
    assert test.status == ConnectionTest.Status.FAILED
    assert "nowhere_dir" in test.message


@pytest.fixture
def http_server():
    hits = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.hits = hits
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_http_200_is_ok(org, org_admin, stages, api, http_server, celery_worker_thread):
    url = f"http://127.0.0.1:{http_server.server_address[1]}/health"
    binding = bind(org, org_admin, stages["development"], "http", {"base_url": url, "timeout_seconds": 5})
    test = finished(request_test(api, org_admin, binding))
    assert test.status == ConnectionTest.Status.OK, test.message
    assert test.message == f"HTTP 200 from {url}."
    assert http_server.hits == ["/health"]


def test_http_unreachable_fails(org, org_admin, stages, api, celery_worker_thread):
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens there
    binding = bind(
        org, org_admin, stages["development"], "http", {"base_url": f"http://127.0.0.1:{port}/", "timeout_seconds": 3}
    )
    test = finished(request_test(api, org_admin, binding))
    assert test.status == ConnectionTest.Status.FAILED and "ConnectionError" in test.message


def _postgres_params(*, reachable: bool = True) -> dict:
    """Binding parameters for the tests' PostgreSQL server (tests/postgres.py), whose credential is
    the secret; with `reachable`, the test skips (fails under REQUIRE_POSTGRES=1) when it does not answer."""
    if reachable:
        pg.connect().close()
    server = pg.server()
    return {
        "host": server["host"],
        "port": server["port"],
        "database": "postgres",
        "user": server["user"],
        "sslmode": "disable",
    }


@pytest.fixture
def pg_secret(org, org_admin, stages):
    return secret_services.secret_create(
        actor=org_admin,
        organization=org,
        name="pg_password",
        value=PG_PASSWORD,
        allowed_environments=[stages["development"], stages["staging"]],
    )


def test_postgres_end_to_end(org, org_admin, stages, api, pg_secret, celery_worker_thread):
    params = _postgres_params()
    binding = bind(org, org_admin, stages["development"], "postgres", params, credential=pg_secret)
    test = finished(request_test(api, org_admin, binding))
    assert test.status == ConnectionTest.Status.OK, test.message
    assert test.message.startswith("Connected to PostgreSQL")
    assert PG_PASSWORD not in test.message

    missing = bind(
        org,
        org_admin,
        stages["development"],
        "postgres",
        {**params, "database": "planasonix_no_such_db"},
        credential=pg_secret,
        name="missing_db",
    )
    test = finished(request_test(api, org_admin, missing))
    assert test.status == ConnectionTest.Status.FAILED
    assert "planasonix_no_such_db" in test.message and PG_PASSWORD not in test.message


def test_credential_needs_use_environment_credentials(
    org, org_admin, stages, members, api, pg_secret, tmp_path, celery_worker_thread
):
    # A staging editor without use_environment_credentials may queue a test, but the credential is
    # not materialized for them.
    editor = grant(org_admin, stages["staging"], members["staging_approver"], perms.CHANGE_CONFIG)
    params = _postgres_params(reachable=False)
    binding = bind(org, org_admin, stages["staging"], "postgres", params, credential=pg_secret)
    test = finished(request_test(api, editor, binding))
    assert test.status == ConnectionTest.Status.FAILED
    assert "use_environment_credentials" in test.message and PG_PASSWORD not in test.message
