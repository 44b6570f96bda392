"""A sqlite 'warehouse' with orders, a reporting database, and a pipeline copying one to the other,
bound per stage (files under tmp_path)."""

import sqlite3

import pytest

from apps.connections import services as connection_services
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.pipelines import services as pipeline_services
from apps.runs import services as run_services
from apps.variables import services as variable_services
from tests.egress_support import sqlite_file

GRAPH = {
    "nodes": [
        {
            "id": "orders_src",
            "type": "source",
            "connection": "warehouse",
            "query": "SELECT order_id, customer_id, amount FROM {{ source_table }} ORDER BY order_id",
        },
        {
            "id": "orders_out",
            "type": "destination",
            "connection": "reporting",
            "table": "{{ target_table }}",
            "mode": "replace",
            "key": ["order_id"],
        },
    ],
    "edges": [["orders_src", "orders_out"]],
}


def make_warehouse(path, rows=100):
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (order_id INTEGER, customer_id INTEGER, amount REAL)")
        conn.executemany(
            "INSERT INTO orders VALUES (?, ?, ?)", [(i, i % 7, round(i * 1.25, 2)) for i in range(1, rows + 1)]
        )
    return path


@pytest.fixture
def run_setup(org, org_admin, stages, members, sqlite_root):
    """Project + pipeline (v1) + roles bound in every stage to sqlite files in its own folder."""
    project = pipeline_services.project_create(
        actor=org_admin, organization=org, name="Sales", default_environment=stages["development"]
    )
    pipeline = pipeline_services.pipeline_create(actor=org_admin, project=project, name="Orders")
    version = pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=GRAPH)
    variable_services.variable_create(
        actor=org_admin, organization=org, name="source_table", type="string", default_value="orders"
    )
    variable_services.variable_create(
        actor=org_admin, organization=org, name="target_table", type="string", default_value="orders_mart"
    )
    warehouse = connection_services.connection_role_create(
        actor=org_admin, organization=org, name="warehouse", kind="sqlite"
    )
    reporting = connection_services.connection_role_create(
        actor=org_admin, organization=org, name="reporting", kind="sqlite"
    )
    paths = {}
    for slug, environment in stages.items():
        source = make_warehouse(sqlite_file(environment, "warehouse.sqlite3"))
        target = sqlite_file(environment, "reporting.sqlite3")
        connection_services.connection_binding_set(
            actor=org_admin, role=warehouse, environment=environment, params={"path": source.name}
        )
        connection_services.connection_binding_set(
            actor=org_admin, role=reporting, environment=environment, params={"path": str(target)}
        )
        paths[slug] = {"source": source, "target": target}
    return {"project": project, "pipeline": pipeline, "version": version, "paths": paths}


@pytest.fixture
def no_dispatch(monkeypatch):
    """Tests without a worker record dispatches instead of leaving messages on the broker."""
    dispatched = []
    monkeypatch.setattr(run_services.runs, "dispatch", dispatched.append)
    return dispatched


@pytest.fixture
def grant(org_admin):
    """grant(user, environment, *codenames): environment permissions, the user's cache forgotten."""

    def give(user, environment, *codenames):
        for codename in codenames:
            env_services.permission_grant(actor=org_admin, environment=environment, codename=codename, user=user)
        perms.forget(user)

    return give
