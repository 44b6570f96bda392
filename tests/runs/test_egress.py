"""Egress at run time: a binding saved while its host resolved to an allowed address, whose name
now resolves to loopback (DNS changed), is refused by previews (400 naming the param) and runs
(failed, nothing connected); the operator's allow-list is the only way in."""

import copy

import pytest

from apps.connections import services as connection_services
from apps.pipelines import services as pipeline_services
from apps.runs import services
from apps.runs.models import RunStatus

from .conftest import GRAPH

pytestmark = pytest.mark.django_db


@pytest.fixture
def pg_pipeline(run_setup, org, stages, members, dns):
    """A member's project role of kind postgres, bound in development to a name that resolves to a
    public address when saved; a pipeline reading from it."""
    developer = members["developer"]
    dns["warehouse.example.test"] = ["203.0.113.9"]
    role = connection_services.connection_role_create(
        actor=developer, organization=org, project=run_setup["project"], name="pg_source", kind="postgres"
    )
    connection_services.connection_binding_set(
        actor=developer,
        role=role,
        environment=stages["development"],
        params={
            "host": "warehouse.example.test",
            "port": 5433,
            "database": "sales",
            "user": "postgres",
            "connect_timeout": 1,
        },
    )
    graph = copy.deepcopy(GRAPH)
    graph["nodes"][0]["connection"] = "pg_source"
    graph["nodes"][0]["query"] = "SELECT id, username, password FROM auth_user"
    pipeline = pipeline_services.pipeline_create(actor=developer, project=run_setup["project"], name="Users")
    pipeline_services.pipeline_version_create(actor=developer, pipeline=pipeline, graph=graph)
    return pipeline


def test_preview_refuses_a_host_that_now_resolves_to_loopback(api, pg_pipeline, members, dns):
    dns["warehouse.example.test"] = ["127.0.0.1"]
    response = api(members["developer"]).get(
        "/api/v1/runs/preview/", {"pipeline": pg_pipeline.pk, "environment": "development", "node": "orders_src"}
    )
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert "params.host" in error["message"] and "loopback" in error["message"]


def test_a_run_refuses_it_too_and_connects_nowhere(pg_pipeline, members, stages, dns, monkeypatch):
    import psycopg

    connected = []
    monkeypatch.setattr(psycopg, "connect", lambda **kwargs: connected.append(kwargs))
    dns["warehouse.example.test"] = ["::1"]
    run = services.run_create(actor=members["developer"], pipeline=pg_pipeline, environment=stages["development"])
    run = services.run_execute(run.pk)
    assert run.status == RunStatus.FAILED and "params.host" in run.error and "loopback" in run.error
    assert connected == []
