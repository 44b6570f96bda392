"""Connection services: per-kind parameter schemas, credentials as secret references, locks,
immutable kinds of bound roles, history."""

import pytest

from apps.connections import connectors, services
from apps.connections.models import ConnectionBinding, ConnectionRole, ConnectionTest
from apps.connections.schemas import validate_params
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.environments import permissions as perms
from tests.egress_support import sqlite_file

from .conftest import grant

pytestmark = pytest.mark.django_db


def role(actor, org, name="warehouse", kind="postgres", **fields):
    return services.connection_role_create(actor=actor, organization=org, name=name, kind=kind, **fields)


def refused(func, field, *args, **kwargs) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        func(*args, **kwargs)
    assert field in caught.value.fields, caught.value.fields
    return caught.value


# --- schemas ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "params"),
    [
        ("postgres", {"host": "db.internal", "port": 5432, "database": "sales", "user": "etl", "sslmode": "require"}),
        ("postgres", {"host": "{{ db_host }}", "port": "{{ db_port }}", "database": "{{db_schema}}"}),
        ("sqlite", {"path": "/data/{{ db_schema }}.sqlite3"}),
        ("mysql", {"host": "m", "database": "d"}),
        ("snowflake", {"account": "a", "warehouse": "w", "database": "d", "role": "r"}),
        ("s3", {"bucket": "raw", "prefix": "orders/"}),
        ("http", {"base_url": "https://api.example.com", "timeout_seconds": 2.5, "verify_tls": False}),
        ("http", {"base_url": "https://api.example.com", "timeout_seconds": 3}),
    ],
)
def test_valid_params(kind, params):
    assert validate_params(kind, params) == params


@pytest.mark.parametrize(
    ("kind", "params", "field", "message"),
    [
        ("postgres", {"host": "h", "database": "d", "hostname": "x"}, "params.hostname", "Unknown parameter"),
        ("postgres", {"host": "h", "database": "d", "port": "5432"}, "params.port", "Expected int"),
        ("postgres", {"host": "h", "database": "d", "port": True}, "params.port", "Expected int"),
        ("postgres", {"host": "h", "database": "d", "port": 70000}, "params.port", "TCP port"),
        ("postgres", {"host": "h", "database": "d", "sslmode": "sometimes"}, "params.sslmode", "One of"),
        ("postgres", {"host": "h"}, "params.database", "Required"),
        ("postgres", {"host": "h", "database": "d", "password": "x"}, "params.password", "reference a Secret"),
        ("http", {"base_url": "https://x", "api_key": "k"}, "params.api_key", "reference a Secret"),
        ("http", {"base_url": "https://x", "verify_tls": "no"}, "params.verify_tls", "Expected bool"),
        ("http", {"base_url": 5}, "params.base_url", "Expected str"),
        ("sqlite", {"path": "   "}, "params.path", "non-empty"),
        ("sqlite", {"path": "a\x00b"}, "params.path", "NUL"),
        ("sqlite", {"path": "p" * 2001}, "params.path", "2000"),
        ("s3", {"bucket": "b", "secret_access_key": "k"}, "params.secret_access_key", "Credentials"),
    ],
)
def test_invalid_params_name_the_key(kind, params, field, message):
    error = refused(validate_params, field, kind, params)
    assert message in error.fields[field][0]


def test_params_must_be_an_object_and_kind_known():
    refused(validate_params, "params", "postgres", ["host"])
    refused(validate_params, "kind", "oracle", {})


def test_templates_must_resolve_to_the_right_type():
    refused(
        validate_params, "params.port", "postgres", {"host": "h", "database": "d", "port": "{{ p }}"}, resolved=True
    )


# --- roles and bindings -----------------------------------------------------------------------------


def test_binding_refuses_credentials_in_params_and_writes_nothing(org, org_admin, stages):
    warehouse = role(org_admin, org)
    error = refused(
        services.connection_binding_set,
        "params.password",
        actor=org_admin,
        role=warehouse,
        environment=stages["development"],
        params={"host": "h", "database": "d", "password": "hunter2"},
    )
    assert "credential" in error.message.lower() and "hunter2" not in error.message
    assert not ConnectionBinding.objects.exists()


def test_credential_must_be_allowed_in_the_environment(org, org_admin, stages, canary_secret, dev_secret):
    warehouse = role(org_admin, org)
    params = {"host": "h", "database": "d"}
    error = refused(
        services.connection_binding_set,
        "credential",
        actor=org_admin,
        role=warehouse,
        environment=stages["development"],
        params=params,
        credential=canary_secret,
    )
    assert "not allowed in environment 'development'" in error.message
    refused(
        services.connection_binding_set,
        "credential",
        actor=org_admin,
        role=warehouse,
        environment=stages["production"],
        params=params,
        credential=dev_secret,
    )
    assert not ConnectionBinding.objects.exists()
    binding = services.connection_binding_set(
        actor=org_admin, role=warehouse, environment=stages["production"], params=params, credential=canary_secret
    )
    assert binding.credential == canary_secret


def test_binding_set_twice_updates_the_one_binding(org, org_admin, stages):
    warehouse = role(org_admin, org, kind="sqlite")
    first = services.connection_binding_set(
        actor=org_admin, role=warehouse, environment=stages["staging"], params={"path": "a.sqlite3"}
    )
    second = services.connection_binding_set(
        actor=org_admin, role=warehouse, environment=stages["staging"], params={"path": "b.sqlite3"}
    )
    assert first.pk == second.pk and ConnectionBinding.objects.get().params == {"path": "b.sqlite3"}
    services.connection_binding_set(
        actor=org_admin, role=warehouse, environment=stages["staging"], params={"path": "b.sqlite3"}
    )
    assert [h.history_type for h in second.history.order_by("history_date")] == ["+", "~"]
    assert {h.history_user for h in second.history.all()} == {org_admin}


def test_role_kind_is_immutable_once_bound(org, org_admin, stages):
    warehouse = role(org_admin, org, kind="sqlite")
    assert services.connection_role_update(actor=org_admin, role=warehouse, kind="postgres").kind == "postgres"
    services.connection_role_update(actor=org_admin, role=warehouse, kind="sqlite")
    services.connection_binding_set(
        actor=org_admin, role=warehouse, environment=stages["development"], params={"path": "x.sqlite3"}
    )
    error = refused(services.connection_role_update, "kind", actor=org_admin, role=warehouse, kind="postgres")
    assert "bound" in error.message
    assert ConnectionRole.objects.get().kind == "sqlite"
    # Other fields still change.
    services.connection_role_update(actor=org_admin, role=warehouse, description="the warehouse")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"name": "Warehouse"}, "name"),
        ({"name": "ware-house"}, "name"),
        ({"name": "w" * 65}, "name"),
        ({"kind": "oracle"}, "kind"),
        ({"required_in": ["prod"]}, "required_in"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_invalid_roles_name_the_field(org, org_admin, stages, fields, field):
    kwargs = {"name": "warehouse", "kind": "postgres", **fields}
    refused(services.connection_role_create, field, actor=org_admin, organization=org, **kwargs)
    assert not ConnectionRole.objects.exists()


def test_one_role_name_per_scope(org, org_admin, stages, project):
    role(org_admin, org)
    with pytest.raises(Conflict):
        role(org_admin, org)
    assert role(org_admin, org, project=project).project == project


def test_who_defines_and_binds(org, org_admin, stages, members, project, outsider):
    developer = members["developer"]
    with pytest.raises(PermissionDenied):
        role(developer, org, name="org_wide")
    mine = role(developer, org, name="scratch", kind="sqlite", project=project)
    services.connection_binding_set(
        actor=developer, role=mine, environment=stages["development"], params={"path": "d.sqlite3"}
    )
    with pytest.raises(PermissionDenied):
        services.connection_binding_set(
            actor=developer, role=mine, environment=stages["staging"], params={"path": "s.sqlite3"}
        )
    with pytest.raises(PermissionDenied):
        role(outsider, org, name="intruder", project=project)


def test_locked_production_bindings_need_manage(org, org_admin, stages, members):
    warehouse = role(org_admin, org, kind="sqlite")
    production = stages["production"]
    approver = grant(org_admin, production, members["prod_approver"], perms.CHANGE_CONFIG)
    with pytest.raises(PermissionDenied) as caught:
        services.connection_binding_set(
            actor=approver, role=warehouse, environment=production, params={"path": "p.sqlite3"}
        )
    assert caught.value.code == "environment_locked"
    binding = services.connection_binding_set(
        actor=org_admin, role=warehouse, environment=production, params={"path": "p.sqlite3"}
    )
    with pytest.raises(PermissionDenied):
        services.connection_binding_delete(actor=approver, binding=binding)
    with pytest.raises(PermissionDenied):
        services.connection_role_delete(actor=approver, role=warehouse)
    approver = grant(org_admin, production, approver, perms.MANAGE)
    services.connection_binding_set(
        actor=approver, role=warehouse, environment=production, params={"path": "p2.sqlite3"}
    )
    services.connection_binding_delete(actor=approver, binding=binding)
    assert not ConnectionBinding.objects.exists()


def test_binding_must_be_in_the_roles_organization(org, org_admin, stages, other_org):
    from apps.environments import services as env_services

    owner = other_org.memberships.get().user
    foreign_env = env_services.environment_create(actor=owner, organization=other_org, name="Dev", kind="development")
    warehouse = role(org_admin, org, kind="sqlite")
    refused(
        services.connection_binding_set,
        "environment",
        actor=org_admin,
        role=warehouse,
        environment=foreign_env,
        params={"path": "x.sqlite3"},
    )


def test_test_request_needs_run_or_config_rights(org, org_admin, stages, members, outsider):
    warehouse = role(org_admin, org, kind="sqlite")
    binding = services.connection_binding_set(
        actor=org_admin, role=warehouse, environment=stages["production"], params={"path": "p.sqlite3"}
    )
    with pytest.raises(PermissionDenied):
        services.connection_test_request(actor=members["developer"], binding=binding)
    with pytest.raises(PermissionDenied):
        services.connection_test_request(actor=outsider, binding=binding)
    assert not ConnectionTest.objects.exists()
    test = services.connection_test_request(actor=org_admin, binding=binding)
    assert test.status == ConnectionTest.Status.QUEUED and test.requested_by == org_admin


# --- connectors (called directly; the worker tests drive them end to end) --------------------------


def test_sqlite_connector_refuses_a_file_that_is_not_a_database(stages, sqlite_root):
    text = sqlite_file(stages["development"], "notes.txt")
    text.write_text("not a database, just some text that is long enough to have a header\n" * 10)
    ok, message = connectors.check("sqlite", {"path": str(text)}, None, environment=stages["development"])
    assert ok is False and "not a database" in message


def test_connector_messages_scrub_the_password(stages):
    development = stages["development"]
    ok, message = connectors.check(
        "postgres",
        {"host": "192.0.2.1", "database": "x", "connect_timeout": 1},
        "pw-CANARY-123",
        environment=development,
    )
    assert ok is False and "pw-CANARY-123" not in message
    ok, message = connectors.check("snowflake", {"account": "a"}, None, environment=development)
    assert ok is False and "not supported" in message
