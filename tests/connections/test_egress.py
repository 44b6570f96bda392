"""Egress for connection bindings and connection tests, every kind that connects (postgres, mysql,
http, s3 endpoints; sqlite confinement): refused when saved (400 naming the field, nothing written)
and again when connecting (DNS changed since the save), allowed only through an explicit allow-list."""

import os

import pytest
from django.db import connection

from apps.connections import connectors, services
from apps.connections.models import ConnectionBinding, ConnectionTest
from apps.connections.targets import sqlite_folder
from apps.core import egress
from apps.core.errors import ValidationFailed
from apps.resolution import connection_tests
from apps.runs import executor
from apps.tenancy import services as tenancy_services
from tests.egress_support import sqlite_file

pytestmark = pytest.mark.django_db

ROLES = "/api/v1/connection-roles/"
BINDINGS = "/api/v1/connection-bindings/"

REFUSED = [
    ("postgres", {"host": "127.0.0.1", "port": 5432, "database": "d", "user": "postgres"}, "params.host"),
    ("postgres", {"host": "localhost", "database": "d"}, "params.host"),
    ("postgres", {"host": "127.1", "database": "d"}, "params.host"),
    ("postgres", {"host": "::ffff:127.0.0.1", "database": "d"}, "params.host"),
    ("postgres", {"host": "169.254.169.254", "database": "d"}, "params.host"),
    ("postgres", {"host": "0.0.0.0", "database": "d"}, "params.host"),  # noqa: S104
    ("postgres", {"host": "/var/run/postgresql", "database": "d"}, "params.host"),
    ("postgres", {"host": "db1.example.com,127.0.0.1", "database": "d"}, "params.host"),
    ("postgres", {"host": "192.0.2.10", "database": "host=127.0.0.1 dbname=d"}, "params.database"),
    ("mysql", {"host": "127.0.0.1", "database": "d"}, "params.host"),
    ("mysql", {"host": "::1", "port": 3306, "database": "d"}, "params.host"),
    ("mysql", {"host": "fe80::1", "database": "d"}, "params.host"),
    ("http", {"base_url": "http://127.0.0.1:8000/api/v1/"}, "params.base_url"),
    ("http", {"base_url": "http://localhost/"}, "params.base_url"),
    ("http", {"base_url": "http://169.254.169.254/latest/meta-data/"}, "params.base_url"),
    ("http", {"base_url": "http://[fd00:ec2::254]/latest/"}, "params.base_url"),
    ("http", {"base_url": "file:///etc/passwd"}, "params.base_url"),
    ("s3", {"bucket": "b", "endpoint_url": "http://127.0.0.1:9000"}, "params.endpoint_url"),
]


@pytest.fixture
def member(members, project):
    """A plain member (development rights only) who defines a role in a project."""
    return members["developer"]


@pytest.mark.parametrize(("kind", "params", "field"), REFUSED)
def test_a_member_cannot_bind_loopback_metadata_or_sockets(api, member, project, stages, kind, params, field):
    client = api(member)
    role = client.post(ROLES, {"organization": "acme", "project": project.pk, "name": "sneaky", "kind": kind})
    assert role.status_code == 201, role.content
    before = ConnectionBinding.objects.count()
    response = client.post(
        BINDINGS, {"role": role.json()["id"], "environment": "development", "params": params}, format="json"
    )
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
    assert ConnectionBinding.objects.count() == before


def _bind(actor, org, stages, kind, params, name="target", environment="development"):
    role = services.connection_role_create(actor=actor, organization=org, name=name, kind=kind)
    return services.connection_binding_set(actor=actor, role=role, environment=stages[environment], params=params)


def test_the_platform_endpoints_are_refused_even_when_allow_listed(
    org, org_admin, stages, network_platform, dns, allow_loopback
):
    dns["broker.internal"] = ["10.20.0.6"]
    network_platform.EGRESS_ALLOW = [*allow_loopback, "10.0.0.0/8", "broker.internal"]
    tenancy_services.organization_update(actor=org_admin, organization=org, egress_allow=["10.0.0.0/8"])
    org.refresh_from_db()
    endpoints = egress.platform_endpoints()
    assert len(endpoints) >= 4
    for index, endpoint in enumerate(endpoints):
        database = sorted(endpoint.databases)[0] if endpoint.databases else "d"
        cases = [
            ("postgres", {"host": endpoint.host, "port": endpoint.port, "database": database}, "params.host"),
            ("mysql", {"host": endpoint.host, "port": endpoint.port, "database": database}, "params.host"),
        ]
        if endpoint.databases is None:
            cases.append(("http", {"base_url": f"http://{endpoint.host}:{endpoint.port}/"}, "params.base_url"))
        for number, (kind, params, field) in enumerate(cases):
            with pytest.raises(ValidationFailed) as exc:
                _bind(org_admin, org, stages, kind, params, name=f"p{index}_{number}")
            assert field in exc.value.fields and "platform" in exc.value.fields[field][0], exc.value.fields
    assert not ConnectionBinding.objects.exists()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the platform's database is SQLite in this run")
def test_the_issue_scenario_the_platform_postgres_database_is_refused(org, member, project, stages, allow_loopback):
    """A member binds the platform's own database (even with loopback allow-listed by the operator)."""
    own = connection.settings_dict
    role = services.connection_role_create(
        actor=member, organization=org, project=project, name="platform", kind="postgres"
    )
    params = {"host": own["HOST"] or "localhost", "port": int(own["PORT"] or 5432), "database": own["NAME"]}
    with pytest.raises(ValidationFailed) as exc:
        services.connection_binding_set(actor=member, role=role, environment=stages["development"], params=params)
    assert "platform's own database" in exc.value.fields["params.host"][0]
    assert not ConnectionBinding.objects.exists()


def test_loopback_only_through_the_operators_allow_list(org, org_admin, stages, allow_loopback):
    binding = _bind(org_admin, org, stages, "postgres", {"host": "127.0.0.1", "port": 5433, "database": "scratch"})
    assert binding.pk
    http = _bind(org_admin, org, stages, "http", {"base_url": "http://[::1]:8080/"}, name="api")
    assert http.pk


def test_an_organization_allow_list_opens_private_ranges_but_never_loopback(org, org_admin, stages, settings, api):
    settings.EGRESS_ALLOW_PRIVATE = False
    with pytest.raises(ValidationFailed, match="private"):
        _bind(org_admin, org, stages, "mysql", {"host": "10.1.2.3", "database": "d"}, name="refused")
    response = api(org_admin).patch(
        f"/api/v1/organizations/{org.pk}/", {"egress_allow": ["10.1.0.0/16", "127.0.0.1"]}, format="json"
    )
    assert response.status_code == 400 and "egress_allow" in response.json()["error"]["fields"]
    response = api(org_admin).patch(f"/api/v1/organizations/{org.pk}/", {"egress_allow": ["10.1.0.0/16"]})
    assert response.status_code == 200, response.content
    assert _bind(org_admin, org, stages, "mysql", {"host": "10.1.2.3", "database": "d"}).pk
    with pytest.raises(ValidationFailed, match="loopback"):
        _bind(org_admin, org, stages, "mysql", {"host": "127.0.0.1", "database": "d"}, name="other")


def test_an_organization_deny_list_refuses_what_the_default_allows(org, org_admin, stages, dns):
    dns["warehouse.corp.example.com"] = ["203.0.113.7"]
    tenancy_services.organization_update(
        actor=org_admin, organization=org, egress_deny=["*.corp.example.com", "198.51.100.0/24"]
    )
    for name, params in [
        ("a", {"host": "warehouse.corp.example.com", "database": "d"}),
        ("b", {"host": "198.51.100.20", "database": "d"}),
    ]:
        with pytest.raises(ValidationFailed, match="deny-list"):
            _bind(org_admin, org, stages, "postgres", params, name=name)
    assert _bind(org_admin, org, stages, "postgres", {"host": "203.0.113.8", "database": "d"}).pk


# --- connect time: DNS changed after the save -----------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params", "field"),
    [
        ("postgres", {"host": "warehouse.example.test", "database": "d", "connect_timeout": 1}, "params.host"),
        ("mysql", {"host": "warehouse.example.test", "database": "d"}, "params.host"),
        ("http", {"base_url": "http://warehouse.example.test/health"}, "params.base_url"),
    ],
)
def test_a_connection_test_refuses_a_name_that_now_resolves_to_loopback(
    org, org_admin, stages, dns, kind, params, field
):
    dns["warehouse.example.test"] = ["203.0.113.9"]
    binding = _bind(org_admin, org, stages, kind, params)
    dns["warehouse.example.test"] = ["127.0.0.1"]
    test = services.connection_test_request(actor=org_admin, binding=binding)
    test = connection_tests.run(test.pk)
    assert test.status == ConnectionTest.Status.FAILED
    assert test.message.startswith("Refused by the egress policy") and field in test.message


def test_the_executor_refuses_a_name_that_now_resolves_to_metadata(org, org_admin, stages, dns):
    dns["warehouse.example.test"] = ["203.0.113.9"]
    params = {"host": "warehouse.example.test", "database": "d"}
    _bind(org_admin, org, stages, "postgres", params)
    dns["warehouse.example.test"] = ["203.0.113.9", "169.254.169.254"]
    with pytest.raises(executor.ExecutionError, match="metadata"):
        executor.connect("postgres", params, None, environment=stages["development"])


def test_the_executor_connects_to_the_checked_address(org, org_admin, stages, dns, monkeypatch):
    """The driver gets the address the policy checked (hostaddr), so a second lookup cannot differ."""
    import psycopg

    seen = {}
    monkeypatch.setattr(psycopg, "connect", lambda **kwargs: seen.update(kwargs))
    dns["warehouse.example.test"] = ["203.0.113.9"]
    executor.connect(
        "postgres", {"host": "warehouse.example.test", "database": "d"}, None, environment=stages["staging"]
    )
    assert seen["hostaddr"] == "203.0.113.9" and seen["host"] == "warehouse.example.test"


# --- SQLite: confined to the environment's own folder ---------------------------------------------


@pytest.fixture
def other_org_environment(other_org, other_owner):
    from apps.environments import services as env_services

    return env_services.environment_create(
        actor=other_owner, organization=other_org, name="Development", kind="development"
    )


def test_sqlite_paths_stay_in_their_environment_and_organization(
    org, org_admin, stages, sqlite_root, other_org_environment
):
    development = stages["development"]
    staging_file = sqlite_file(stages["staging"], "warehouse.sqlite3")
    other_org_file = sqlite_file(other_org_environment, "warehouse.sqlite3")
    own = sqlite_file(development, "own.sqlite3")
    os.symlink(staging_file, sqlite_folder(development) / "link.sqlite3")
    refused = [
        str(staging_file),
        str(other_org_file),
        f"../env-{stages['staging'].pk}/warehouse.sqlite3",
        f"sub/../../env-{stages['staging'].pk}/warehouse.sqlite3",
        "~/warehouse.sqlite3",
        "link.sqlite3",
        str(sqlite_root / "warehouse.sqlite3"),
        "/etc/passwd",
        ".",
    ]
    for number, path in enumerate(refused):
        with pytest.raises(ValidationFailed) as exc:
            _bind(org_admin, org, stages, "sqlite", {"path": path}, name=f"s{number}")
        assert "params.path" in exc.value.fields, path
    assert not ConnectionBinding.objects.exists()
    assert _bind(org_admin, org, stages, "sqlite", {"path": "own.sqlite3"}, name="relative").pk
    assert _bind(org_admin, org, stages, "sqlite", {"path": str(own)}, name="absolute").pk
    assert _bind(org_admin, org, stages, "sqlite", {"path": "sub/dir/new.sqlite3"}, name="nested").pk


def test_a_symlink_planted_after_the_save_is_refused_at_connect(org, org_admin, stages, sqlite_root):
    development = stages["development"]
    target = sqlite_file(stages["staging"], "warehouse.sqlite3")
    _bind(org_admin, org, stages, "sqlite", {"path": "later.sqlite3"})
    sqlite_folder(development).mkdir(parents=True)
    os.symlink(target, sqlite_folder(development) / "later.sqlite3")
    with pytest.raises(executor.ExecutionError, match="Symbolic links"):
        executor.connect("sqlite", {"path": "later.sqlite3"}, None, environment=development, read_only=True)
    ok, message = connectors.check("sqlite", {"path": "later.sqlite3"}, None, environment=development)
    assert not ok and "Symbolic links" in message
