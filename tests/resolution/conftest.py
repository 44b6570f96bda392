import pytest

from apps.connections import services as connection_services
from apps.pipelines import services as pipeline_services
from apps.secrets import services as secret_services
from apps.variables import services as variable_services

GRAPH = {
    "nodes": [
        {
            "id": "orders_src",
            "type": "source",
            "connection": "analytics_warehouse",
            "query": "SELECT * FROM {{ db_schema }}.orders",
        },
        {
            "id": "orders_out",
            "type": "destination",
            "connection": "reporting_db",
            "table": "{{ db_schema }}_mart.orders",
            "mode": "replace",
            "key": ["order_id"],
        },
    ],
    "edges": [["orders_src", "orders_out"]],
}


@pytest.fixture
def project(org, org_admin, stages):
    return pipeline_services.project_create(
        actor=org_admin, organization=org, name="Sales", default_environment=stages["development"]
    )


@pytest.fixture
def pipeline(project, org_admin):
    return pipeline_services.pipeline_create(actor=org_admin, project=project, name="Orders")


@pytest.fixture
def version(pipeline, org_admin):
    return pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=GRAPH, message="first")


@pytest.fixture
def canary_secret(org, org_admin, stages):
    """A secret whose value must never appear anywhere users or logs can see."""
    return secret_services.secret_create(
        actor=org_admin,
        organization=org,
        name="warehouse_password",
        value="CANARY-s3cr3t-VALUE-9f8e7d",
        allowed_environments=[stages["production"], stages["staging"]],
    )


@pytest.fixture
def configured(org, org_admin, stages, project, pipeline, version, canary_secret):
    """db_schema defined at org scope with overrides; two roles bound in every stage."""
    var = variable_services.variable_create(
        actor=org_admin,
        organization=org,
        name="db_schema",
        type="string",
        default_value="dev",
        required_in=["production"],
    )
    variable_services.variable_override_set(actor=org_admin, variable=var, environment=stages["staging"], value="stg")
    variable_services.variable_override_set(
        actor=org_admin, variable=var, environment=stages["production"], value="prod"
    )
    for name in ("analytics_warehouse", "reporting_db"):
        role = connection_services.connection_role_create(actor=org_admin, organization=org, name=name, kind="sqlite")
        for slug, environment in stages.items():
            connection_services.connection_binding_set(
                actor=org_admin,
                role=role,
                environment=environment,
                params={"path": f"{{{{ db_schema }}}}_{name}.sqlite3"},
                credential=canary_secret if slug != "development" else None,
            )
    return var
