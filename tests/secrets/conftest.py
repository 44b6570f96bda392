"""Secrets fixtures: the resolution fixtures (project, pipeline, version, canary_secret, configured),
an executor persona holding use_environment_credentials, and
the canary `world` (one unique secret used every way a user can use one)."""

import base64
import sqlite3
import uuid

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model

from apps.connections import services as connection_services
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.notifications import services as notification_services
from apps.pipelines import services as pipeline_services
from apps.secrets import services
from apps.variables import services as variable_services
from tests.egress_support import sqlite_file
from tests.resolution.conftest import canary_secret, configured, pipeline, project, version  # noqa: F401

User = get_user_model()

CANARY = "CANARY-s3cr3t-VALUE-9f8e7d"


@pytest.fixture
def executor(org_admin, stages, service_account):
    """The service account's user, allowed to use credentials in staging only."""
    env_services.permission_grant(
        actor=org_admin, environment=stages["staging"], codename=perms.USE_CREDENTIALS, user=service_account.user
    )
    user = User.objects.get(pk=service_account.user.pk)
    perms.forget(user)
    return user


@pytest.fixture
def new_key():
    return Fernet.generate_key().decode()


@pytest.fixture
def make_secret(org, org_admin):
    def make(name="db_password", value="s3cret-value", **kwargs):
        return services.secret_create(actor=org_admin, organization=org, name=name, value=value, **kwargs)

    return make


WEBHOOK_TOKEN = "hooktoken" + uuid.uuid4().hex


def canary_graph(query="SELECT order_id, note FROM orders ORDER BY order_id", table="orders_mart", **extra):
    source = {"id": "orders_src", "type": "source", "connection": "warehouse", "query": query}
    destination = {
        "id": "orders_out",
        "type": "destination",
        "connection": "reporting",
        "table": table,
        "mode": "replace",
        "key": ["order_id"],
    }
    for node_id, field, text in extra.get("texts", ()):
        (source if node_id == "orders_src" else destination)[field] = text
    return {"nodes": [source, destination], "edges": [["orders_src", "orders_out"]]}


@pytest.fixture
def canary():
    return f"CANARY-{uuid.uuid4().hex}-everywhere"


def forms_of(value: str) -> list[str]:
    """The value and the encodings it is planted in (computed here, not by the code under test)."""
    return [value, base64.b64encode(value.encode()).decode(), value.encode().hex()]


@pytest.fixture
def world(org, org_admin, stages, tmp_path, settings, canary):
    settings.SQLITE_CONNECTION_ROOT = str(tmp_path)
    secret = services.secret_create(
        actor=org_admin, organization=org, name="canary_pw", value=canary, allowed_environments=list(stages.values())
    )
    canary_project = pipeline_services.project_create(
        actor=org_admin, organization=org, name="Canary", default_environment=stages["development"]
    )
    canary_pipeline = pipeline_services.pipeline_create(actor=org_admin, project=canary_project, name="Leaky")
    variables = {
        "sv_org": variable_services.variable_create(
            actor=org_admin, organization=org, name="sv_org", type="secret", default_secret=secret
        ),
        "sv_project": variable_services.variable_create(
            actor=org_admin,
            organization=org,
            project=canary_project,
            name="sv_project",
            type="secret",
            default_secret=secret,
        ),
        "sv_pipeline": variable_services.variable_create(
            actor=org_admin,
            organization=org,
            pipeline=canary_pipeline,
            name="sv_pipeline",
            type="secret",
            default_secret=secret,
        ),
        "sv_override": variable_services.variable_create(
            actor=org_admin, organization=org, name="sv_override", type="secret"
        ),
    }
    variable_services.variable_override_set(
        actor=org_admin, variable=variables["sv_override"], environment=stages["development"], secret=secret
    )
    warehouse_file = sqlite_file(stages["development"], "warehouse.sqlite3")
    with sqlite3.connect(warehouse_file) as conn:
        conn.execute("CREATE TABLE orders (order_id TEXT, note TEXT)")
        b64, hexed = forms_of(canary)[1:]
        # The source data carries the value (duplicated as a key, so the metrics' sample of
        # duplicate keys carries it too): only the masking boundary keeps it in the worker.
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?)",
            [(canary, "raw"), (canary, "again"), ("b64", b64), ("hex", hexed), ("plain", "nothing secret")],
        )
    roles = {
        name: connection_services.connection_role_create(actor=org_admin, organization=org, name=name, kind="sqlite")
        for name in ("warehouse", "reporting")
    }
    connection_services.connection_binding_set(
        actor=org_admin,
        role=roles["warehouse"],
        environment=stages["development"],
        params={"path": "warehouse.sqlite3"},
        credential=secret,
    )
    connection_services.connection_binding_set(
        actor=org_admin,
        role=roles["reporting"],
        environment=stages["development"],
        params={"path": "reporting.sqlite3"},
    )
    channel, _signing = notification_services.channel_create(
        actor=org_admin,
        organization=org,
        name="hooks",
        kind="webhook",
        target=f"https://hooks.example.com/services/{WEBHOOK_TOKEN}",
    )
    env_services.runtime_policy_update(
        actor=org_admin, environment=stages["development"], notification_channels=[channel]
    )
    return {
        "secret": secret,
        "project": canary_project,
        "pipeline": canary_pipeline,
        "variables": variables,
        "roles": roles,
    }
