"""Odd values in every query parameter of every GET operation in the schema: a 4xx in the one error
shape naming the parameter, or a 2xx — never a 5xx.

Operations and their parameters are read from the OpenAPI schema, so filters added later are swept
too. Each case varies one parameter while the operation's required parameters keep valid values,
so a 400 must name the parameter that was varied. The world is built once for the module (inside
a transaction rolled back at the end); every case only reads."""

import pytest
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from .worlds import acme, rolled_back

pytestmark = pytest.mark.django_db

SCHEMA = SchemaGenerator().get_schema(request=None, public=True)

# Raw query-string values (already percent-encoded where they need to be): some for every parameter,
# more by the parameter's published type.
ANY_VALUES = [
    "%ff",  # not UTF-8
    "%ed%a0%80",  # an encoded lone surrogate
    "x" * 5000,
    "%D0%B0%D1%81%D0%BC%D0%B5",  # 'асме' in Cyrillic look-alikes of 'acme'
    "true,false",
    "%20",
    "",
    "%F0%9F%98%80",  # an emoji
    "%27%3B%20DROP%20TABLE%20x%3B--",
]
NUMBER_VALUES = [
    "1" + "0" * 30,  # 10**30: past every database integer
    "9223372036854775808",  # 2**63
    "-9223372036854775809",
    "-1",
    "0",
    "-5.4e-226",
    "1e999",
    "NaN",
    "1.5",
    "%C2%B2",  # '²': str.isdigit() says yes, int() says no
    "%D9%A3",  # Arabic-Indic three: int() reads it as 3
]
MOMENT_VALUES = [
    "2026-13-45T99:99",
    "0084-02-23T12:33:05%2B17:20",
    "0001-01-01T00:00:00%2B14:00",
    "9999-12-31T23:59:59-14:00",
    "9999-12-31T23:59:59-23:59",
    "2026-11-24T09:00:00",
    "-0001-01-01T00:00:00Z",
    "1" + "0" * 30,
]
STRING_VALUES = ["-created_at,id,%3F", "__all__", "a%0Ab", "%5B%5D", "1" + "0" * 30, "-1"]


def _odd_values(parameter) -> list[str]:
    schema = parameter.get("schema", {})
    if schema.get("type") in ("integer", "number"):
        return ANY_VALUES + NUMBER_VALUES
    if schema.get("format") == "date-time":
        return ANY_VALUES + MOMENT_VALUES
    if schema.get("type") == "boolean":
        return [*ANY_VALUES, "TRUE", "yes", "2", "-1"]
    return ANY_VALUES + STRING_VALUES


def _get_operations():
    operations = []
    for path, methods in SCHEMA["paths"].items():
        operation = methods.get("get")
        if operation is None:
            continue
        parameters = [p for p in operation.get("parameters", []) if p["in"] == "query"]
        for parameter in parameters:
            operations.append((path, parameter, parameters))
    return sorted(operations, key=lambda op: (op[0], op[1]["name"]))


OPERATIONS = _get_operations()


# Valid values for the required parameters, and for path parameters, from the world.
REQUIRED = {
    "environment": lambda w: "development",
    "from": lambda w: "development",
    "to": lambda w: "staging",
    "pipeline": lambda w: str(w["pipeline"].pk),
    "node": lambda w: "src",
    "format": lambda w: "jsonl",  # the audit export
}
PATH_PARAMETERS = {
    "/api/v1/pipelines/{id}/": "pipeline",
    "/api/v1/projects/{id}/": "project",
    "/api/v1/connection-bindings/{id}/": "binding",
    "/api/v1/environments/{id}/": "environment",
}


def _path(path: str, world) -> str:
    for prefix, key in PATH_PARAMETERS.items():
        if path.startswith(prefix):
            path = path.replace("{id}", str(world[key].pk))
    assert "{" not in path, f"no world object for the path parameters of {path}: add one to PATH_PARAMETERS"
    return path


@pytest.fixture(scope="module")
def world(django_db_setup, django_db_blocker, tmp_path_factory):
    """One organization with a pipeline, variables, a binding and a run, made once and rolled back."""
    with rolled_back(django_db_blocker):
        yield _build_world(tmp_path_factory.mktemp("warehouse") / "warehouse.sqlite3")


def _build_world(warehouse_path) -> dict:
    from apps.connections import services as connection_services
    from apps.runs import services as run_services
    from apps.runs.models import Executor
    from apps.variables import services as variable_services

    w = acme("qp")
    owner, org, pipeline, development = w["owner"], w["org"], w["pipeline"], w["development"]
    variable = variable_services.variable_create(
        actor=owner, organization=org, name="batch_size", type="integer", default_value=10
    )
    variable_services.variable_override_set(actor=owner, variable=variable, environment=w["staging"], value=20)
    role = connection_services.connection_role_create(actor=owner, organization=org, name="warehouse", kind="sqlite")
    binding = connection_services.connection_binding_set(
        actor=owner, role=role, environment=development, params={"path": "warehouse.sqlite3"}
    )
    run_services.schedule_save(actor=owner, pipeline=pipeline, environment=development, cron="0 6 * * *")
    run_services.run_create(actor=owner, pipeline=pipeline, environment=development, executor_kind=Executor.EXTERNAL)
    return {**w, "binding": binding, "environment": development}


@pytest.fixture
def client(world):
    client = APIClient()
    client.force_login(world["owner"])
    return client


def _query(parameters, world, name, value) -> str:
    pairs = [f"{p['name']}={REQUIRED[p['name']](world)}" for p in parameters if p.get("required") and p["name"] != name]
    pairs.append(f"{name}={value}")
    return "&".join(pairs)


def test_the_baseline_requests_succeed(client, world):
    """Without odd values, every GET operation answers 200, so the sweep tests real handlers."""
    for path in sorted({op[0] for op in OPERATIONS}):
        parameters = next(op[2] for op in OPERATIONS if op[0] == path)
        query = "&".join(f"{p['name']}={REQUIRED[p['name']](world)}" for p in parameters if p.get("required"))
        response = client.get(_path(path, world), QUERY_STRING=query)
        assert response.status_code == 200, (path, response.status_code, response.content[:300])


@pytest.mark.parametrize("op", OPERATIONS, ids=lambda op: f"{op[0]}?{op[1]['name']}")
def test_odd_values(client, world, op):
    path, parameter, parameters = op
    name = parameter["name"]
    url = _path(path, world)
    failures = []
    for value in _odd_values(parameter):
        response = client.get(url, QUERY_STRING=_query(parameters, world, name, value))
        shown = value[:40]
        if response.status_code >= 500:
            failures.append((shown, response.status_code, response.content[:200]))
            continue
        if response.status_code >= 400:
            error = response.json().get("error")
            if not (isinstance(error, dict) and error.get("code") and error.get("message")):
                failures.append((shown, response.status_code, "not the one error shape"))
            elif response.status_code == 400 and name not in (error.get("fields") or {}):
                failures.append((shown, 400, f"does not name {name!r}: {error}"))
    assert not failures, failures
