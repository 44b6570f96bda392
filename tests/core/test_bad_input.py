"""Bad input on every writable endpoint: a 4xx in the one error shape, naming the field, and nothing
written (invariant 4).

Writable operations are read from the OpenAPI schema, so endpoints added later are covered too.
Operations listed in VALID get a known-good request (checked to succeed, so "nothing written"
means something); the others are exercised from an empty body, which still proves the 4xx, the
error shape and the field named."""

import functools
import json
import time
from urllib.parse import quote

import pytest
from django.apps import apps as django_apps
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from drf_spectacular.generators import SchemaGenerator
from rest_framework.test import APIClient

from apps.core import signing
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import FreezeKind
from apps.notifications import services as notification_services
from apps.notifications.models import ChannelKind, Event, Notification
from apps.tenancy import services as tenancy_services
from tests.conftest import make_acme

pytestmark = pytest.mark.django_db

WRITE_METHODS = ("post", "put", "patch", "delete")
HOOK_KEY = "hook-signing-value-4c7e"


def _load_schema() -> dict:
    return SchemaGenerator().get_schema(request=None, public=True)


SCHEMA = _load_schema()


def _resolve(schema: dict) -> dict:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = SCHEMA["components"]["schemas"][name]
    return schema


def _request_schema(operation: dict) -> dict | None:
    content = operation.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    return _resolve(content["application/json"]["schema"])


OPERATIONS = sorted(
    (method.upper(), path, _request_schema(operation))
    for path, operations in SCHEMA["paths"].items()
    for method, operation in operations.items()
    if method in WRITE_METHODS
)
BODY_OPERATIONS = [op for op in OPERATIONS if op[2] is not None and op[2].get("properties")]


def _op_id(op) -> str:
    return f"{op[0]} {op[1]}"


# --- the world and the known-good requests --------------------------------------------------


@pytest.fixture(scope="module")
def shared_world(module_db):
    """Built once per module (per xdist worker): every case rolls its own changes back, so the
    442 cases need not each rebuild it."""
    return module_db(_build_world)


@pytest.fixture
def world(db, shared_world):
    return shared_world


def _build_world() -> dict:
    acme = make_acme()
    org, org_admin, stages, members = acme["org"], acme["org_admin"], acme["stages"], acme["members"]
    channel, _ = notification_services.channel_create(
        actor=org_admin, organization=org, name="ops", kind=ChannelKind.EMAIL, target="ops@example.com"
    )
    window = env_services.freeze_window_create(
        actor=org_admin,
        environment=stages["production"],
        kind=FreezeKind.RECURRING,
        cron="0 22 * * 5",
        duration_minutes=60,
        timezone="UTC",
        reason="weekend",
    )
    notification_services.emit(Event.RUN_FAILED, {"environment": "production"}, organization=org, users=[org_admin])
    key, _ = tenancy_services.api_key_create(actor=org_admin, organization=org, name="existing", scopes=["read"])
    config = _configuration_layer(org, org_admin, stages)
    world = {
        **config,
        "org": org,
        "stages": stages,
        "membership": members["developer"].memberships.get(organization=org),
        "channel": channel,
        "window": window,
        "notification": Notification.objects.filter(user=org_admin).first(),
        "key": key,
        "admin": org_admin,
        "operator": get_user_model().objects.create_superuser("operator", "operator@example.com", "pw"),
    }
    world.update(_promotions_layer(world))
    return world


def _promotions_layer(w) -> dict:
    """An approval rule on staging; a pending and a failed development → staging request of the
    world's pipeline (the failed one: staging has no warehouse binding, so it is not ready); and a
    second pipeline with v1 then v2 deployed in development (promotable, and a rollback target)."""
    from apps.approvals import services as approval_services
    from apps.approvals.models import ApprovalRule
    from apps.pipelines import services as pipeline_services
    from apps.runs import services as run_services

    admin, stages, developer = w["admin"], w["stages"], w["membership"].user
    for codename in (perms.VIEW, perms.REQUEST_PROMOTION):
        env_services.permission_grant(actor=admin, environment=stages["staging"], codename=codename, user=developer)
    perms.forget(developer)
    pipeline, version = w["pipeline"], w["pipeline"].versions.get(number=1)
    run_services.deploy_direct(actor=admin, pipeline=pipeline, environment=stages["development"], version=version)
    rule = approval_services.rule_save(
        actor=admin, rule=ApprovalRule(environment=stages["staging"], name="staging review", required_approvals=1)
    )

    def request(of=pipeline, version=version):
        created, _ = approval_services.promotion_request_create(
            actor=developer, pipeline=of, version=version, source=stages["development"]
        )
        return created

    invoices = pipeline_services.pipeline_create(actor=admin, project=w["project"], name="Invoices")
    deployment = None
    for number in (1, 2):
        graph = {
            "nodes": [
                {"id": "src", "type": "source", "connection": "warehouse", "query": f"SELECT {number} AS n"},
                {"id": "dst", "type": "destination", "connection": "warehouse", "table": "invoices"},
            ],
            "edges": [["src", "dst"]],
        }
        invoice_version = pipeline_services.pipeline_version_create(actor=admin, pipeline=invoices, graph=graph)
        deployment = run_services.deploy_direct(
            actor=admin, pipeline=invoices, environment=stages["development"], version=invoice_version
        )
    # Another pipeline than the pending request's: retrying it must not meet an open request of the same version.
    failed = request(invoices, deployment.version)
    approval_services.promotion_approve(actor=admin, request=failed)
    approval_services.promotion_execute(failed.pk)
    failed.refresh_from_db()
    assert failed.state == "failed", failed.state
    trigger = run_services.trigger_create(
        actor=admin,
        pipeline=invoices,
        environment=stages["development"],
        kind="on_success",
        upstream_pipeline=pipeline,
    )
    from apps.secrets import services as secret_services

    hook_key = secret_services.secret_create(actor=admin, organization=w["org"], name="hook_key", value=HOOK_KEY)
    hook = run_services.trigger_create(
        actor=admin, pipeline=pipeline, environment=stages["development"], kind="webhook", signing_secret=hook_key
    )
    return {
        "trigger": trigger,
        "hook": hook,
        "rule": rule,
        "promotion": request(),
        "failed_promotion": failed,
        "invoices": invoices,
        "rollback_deployment": deployment,
    }


def _configuration_layer(org, admin, stages) -> dict:
    """One of each configuration object, so every configuration endpoint has something to write to."""
    from apps.connections import services as connection_services
    from apps.pipelines import services as pipeline_services
    from apps.secrets import services as secret_services
    from apps.variables import services as variable_services

    secret = secret_services.secret_create(
        actor=admin,
        organization=org,
        name="db_password",
        value="s3cr3t-value-xyz",
        allowed_environments=list(stages.values()),
    )
    project = pipeline_services.project_create(actor=admin, organization=org, name="Sales")
    pipeline = pipeline_services.pipeline_create(actor=admin, project=project, name="Orders")
    graph = {
        "nodes": [
            {"id": "src", "type": "source", "connection": "warehouse", "query": "SELECT 1 AS n"},
            {"id": "dst", "type": "destination", "connection": "warehouse", "table": "t", "mode": "replace"},
        ],
        "edges": [["src", "dst"]],
    }
    pipeline_services.pipeline_version_create(actor=admin, pipeline=pipeline, graph=graph)
    variable = variable_services.variable_create(
        actor=admin, organization=org, name="batch_size", type="integer", default_value=10
    )
    override = variable_services.variable_override_set(
        actor=admin, variable=variable, environment=stages["staging"], value=20
    )
    personal = variable_services.personal_override_set(
        actor=admin, variable=variable, environment=stages["development"], value=15
    )
    role = connection_services.connection_role_create(actor=admin, organization=org, name="warehouse", kind="sqlite")
    binding = connection_services.connection_binding_set(
        actor=admin, role=role, environment=stages["development"], params={"path": "w.sqlite3"}
    )
    from apps.runs import services as run_services
    from apps.runs.models import Executor

    # Without runs (a pipeline with runs cannot be deleted: its runs keep their versions).
    spare_project = pipeline_services.project_create(actor=admin, organization=org, name="Spare")
    spare_pipeline = pipeline_services.pipeline_create(actor=admin, project=project, name="Spare pipeline")

    schedule = run_services.schedule_save(
        actor=admin, pipeline=pipeline, environment=stages["development"], cron="0 6 * * *"
    )
    queued = run_services.run_create(
        actor=admin, pipeline=pipeline, environment=stages["development"], executor_kind=Executor.EXTERNAL
    )
    claimable = run_services.run_create(
        actor=admin, pipeline=pipeline, environment=stages["development"], executor_kind=Executor.EXTERNAL
    )
    claimed, _ = run_services.run_claim_external(actor=admin, run=claimable, claimer=admin.username)
    from apps.repositories import services as repository_services

    repository = repository_services.repository_create(
        actor=admin, pipeline=pipeline, clone_url="file:///srv/git/orders.git", definition_path="orders.yaml"
    )
    return {
        "repository": repository,
        "spare_project": spare_project,
        "spare_pipeline": spare_pipeline,
        "secret": secret,
        "project": project,
        "pipeline": pipeline,
        "variable": variable,
        "override": override,
        "personal": personal,
        "role": role,
        "binding": binding,
        "schedule": schedule,
        "queued_run": queued,
        "claimed_run": claimed,
    }


# Operations only a platform operator may perform; everything else runs as the organization's owner.
OPERATOR_OPERATIONS = {"POST /api/v1/organizations/"}
# Operations authenticated by a signature instead of a user (the world's webhook trigger, signed with
# its `hook_key` secret): their client signs every body it sends, so what is refused is the body.
SIGNED_OPERATIONS = {"POST /api/v1/triggers/hooks/{token}/": HOOK_KEY}


class SigningClient(APIClient):
    """Signs each request's body as a webhook sender does (apps.core.signing's timestamped scheme)."""

    def __init__(self, key: str, **defaults):
        super().__init__(**defaults)
        self.key = key

    def generic(self, method, path, data="", content_type="application/octet-stream", secure=False, **extra):
        body = data.encode() if isinstance(data, str) else (data or b"")
        timestamp = int(time.time())
        extra.setdefault("HTTP_X_PLANASONIX_TIMESTAMP", str(timestamp))
        extra.setdefault("HTTP_X_PLANASONIX_SIGNATURE", signing.sign(self.key, timestamp, body))
        return super().generic(method, path, data, content_type, secure, **extra)


def _client(api, world, op):
    if _op_id(op) in SIGNED_OPERATIONS:
        return SigningClient(SIGNED_OPERATIONS[_op_id(op)])
    return api(world["operator" if _op_id(op) in OPERATOR_OPERATIONS else "admin"])


# "METHOD /path/{id}/": (path parameters from the world, a request body that succeeds)
VALID = {
    "POST /api/v1/organizations/": (lambda w: {}, {"name": "Initech"}),
    "PUT /api/v1/organizations/{id}/": (lambda w: {"id": w["org"].pk}, {"name": "Acme Corp"}),
    "PATCH /api/v1/organizations/{id}/": (lambda w: {"id": w["org"].pk}, {"name": "Acme Corp"}),
    "POST /api/v1/memberships/": (lambda w: {}, {"organization": "acme", "username": "outsider", "role": "member"}),
    "PATCH /api/v1/memberships/{id}/": (lambda w: {"id": w["membership"].pk}, {"role": "admin"}),
    "DELETE /api/v1/memberships/{id}/": (lambda w: {"id": w["membership"].pk}, None),
    "POST /api/v1/service-accounts/": (lambda w: {}, {"organization": "acme", "name": "deployer"}),
    "POST /api/v1/api-keys/": (lambda w: {}, {"organization": "acme", "name": "ci", "scopes": ["read"]}),
    "DELETE /api/v1/api-keys/{id}/": (lambda w: {"id": w["key"].pk}, None),
    "POST /api/v1/environments/": (lambda w: {}, {"organization": "acme", "name": "QA", "kind": "custom"}),
    "PATCH /api/v1/environments/{id}/": (
        lambda w: {"id": w["stages"]["development"].pk},
        {"description": "Where changes start."},
    ),
    "POST /api/v1/environments/{id}/freeze-windows/": (
        lambda w: {"id": w["stages"]["staging"].pk},
        {"kind": "recurring", "cron": "0 6 * * 1", "duration_minutes": 30, "timezone": "UTC", "reason": "standup"},
    ),
    "DELETE /api/v1/environments/{id}/freeze-windows/{window_id}/": (
        lambda w: {"id": w["stages"]["production"].pk, "window_id": w["window"].pk},
        None,
    ),
    "POST /api/v1/environments/{id}/permissions/": (
        lambda w: {"id": w["stages"]["staging"].pk},
        {"codename": perms.VIEW, "username": "dev"},
    ),
    "DELETE /api/v1/environments/{id}/permissions/": (
        lambda w: {"id": w["stages"]["staging"].pk},
        {"codename": perms.VIEW, "username": "stager"},
    ),
    "PATCH /api/v1/environments/{id}/policy/": (
        lambda w: {"id": w["stages"]["development"].pk},
        {"sample_rows": 500, "allowed_destinations": ["s3://bucket"]},
    ),
    "POST /api/v1/notification-channels/": (
        lambda w: {},
        {"organization": "acme", "name": "alerts", "kind": "email", "target": "alerts@example.com"},
    ),
    "PATCH /api/v1/notification-channels/{id}/": (lambda w: {"id": w["channel"].pk}, {"name": "renamed"}),
    "DELETE /api/v1/notification-channels/{id}/": (lambda w: {"id": w["channel"].pk}, None),
    "POST /api/v1/notifications/{id}/mark-read/": (lambda w: {"id": w["notification"].pk}, None),
    "POST /api/v1/notifications/mark-all-read/": (lambda w: {}, None),
    "POST /api/v1/secrets/": (
        lambda w: {},
        {"organization": "acme", "name": "api_token", "value": "tok-123456", "allowed_environments": ["staging"]},
    ),
    "PATCH /api/v1/secrets/{id}/": (lambda w: {"id": w["secret"].pk}, {"description": "rotated quarterly"}),
    "DELETE /api/v1/secrets/{id}/": (lambda w: {"id": w["secret"].pk}, None),
    "POST /api/v1/projects/": (lambda w: {}, {"organization": "acme", "name": "Marketing"}),
    "PATCH /api/v1/projects/{id}/": (lambda w: {"id": w["project"].pk}, {"description": "Order analytics."}),
    "DELETE /api/v1/projects/{id}/": (lambda w: {"id": w["spare_project"].pk}, None),
    "POST /api/v1/pipelines/": (lambda w: {}, {"project": None, "name": "Refunds"}),
    "PATCH /api/v1/pipelines/{id}/": (lambda w: {"id": w["pipeline"].pk}, {"description": "Nightly."}),
    "DELETE /api/v1/pipelines/{id}/": (lambda w: {"id": w["spare_pipeline"].pk}, None),
    "POST /api/v1/pipelines/{id}/versions/": (
        lambda w: {"id": w["pipeline"].pk},
        {
            "graph": {
                "nodes": [
                    {"id": "src", "type": "source", "connection": "warehouse", "query": "SELECT 2 AS n"},
                    {"id": "dst", "type": "destination", "connection": "warehouse", "table": "t2"},
                ],
                "edges": [["src", "dst"]],
            },
            "message": "second",
        },
    ),
    "POST /api/v1/variables/": (
        lambda w: {},
        {"organization": "acme", "name": "region", "type": "string", "default_value": "eu-west-1"},
    ),
    "PATCH /api/v1/variables/{id}/": (lambda w: {"id": w["variable"].pk}, {"description": "Rows per batch."}),
    "DELETE /api/v1/variables/{id}/": (lambda w: {"id": w["variable"].pk}, None),
    "POST /api/v1/variable-overrides/": (lambda w: {}, {"variable": None, "environment": "development", "value": 5}),
    "PATCH /api/v1/variable-overrides/{id}/": (lambda w: {"id": w["override"].pk}, {"value": 30}),
    "DELETE /api/v1/variable-overrides/{id}/": (lambda w: {"id": w["override"].pk}, None),
    "POST /api/v1/personal-overrides/": (lambda w: {}, {"variable": None, "environment": "development", "value": 5}),
    "PATCH /api/v1/personal-overrides/{id}/": (lambda w: {"id": w["personal"].pk}, {"value": 30}),
    "DELETE /api/v1/personal-overrides/{id}/": (lambda w: {"id": w["personal"].pk}, None),
    "POST /api/v1/connection-roles/": (lambda w: {}, {"organization": "acme", "name": "lake", "kind": "s3"}),
    "PATCH /api/v1/connection-roles/{id}/": (lambda w: {"id": w["role"].pk}, {"description": "The warehouse."}),
    "DELETE /api/v1/connection-roles/{id}/": (lambda w: {"id": w["role"].pk}, None),
    "POST /api/v1/connection-bindings/": (
        lambda w: {},
        {"role": None, "environment": "staging", "params": {"path": "s.sqlite3"}},
    ),
    "PATCH /api/v1/connection-bindings/{id}/": (
        lambda w: {"id": w["binding"].pk},
        {"params": {"path": "w2.sqlite3"}},
    ),
    "DELETE /api/v1/connection-bindings/{id}/": (lambda w: {"id": w["binding"].pk}, None),
    "POST /api/v1/runs/": (lambda w: {}, {"pipeline": None, "environment": "development"}),
    "POST /api/v1/runs/{id}/cancel/": (lambda w: {"id": w["queued_run"].pk}, None),
    "POST /api/v1/runs/{id}/claim/": (lambda w: {"id": w["queued_run"].pk}, None),
    "POST /api/v1/runs/{id}/report/": (
        lambda w: {"id": w["claimed_run"].pk},
        {"status": "failed", "error": "engine stopped", "log_excerpt": "x"},
    ),
    "POST /api/v1/deployments/": (lambda w: {}, {"pipeline": None, "environment": "development"}),
    "POST /api/v1/schedules/": (lambda w: {}, {"pipeline": None, "environment": "development", "cron": "0 7 * * *"}),
    "POST /api/v1/approval-rules/": (
        lambda w: {},
        {"organization": "acme", "environment": "production", "name": "production review", "required_approvals": 2},
    ),
    "PATCH /api/v1/approval-rules/{id}/": (lambda w: {"id": w["rule"].pk}, {"wait_minutes": 10}),
    "DELETE /api/v1/approval-rules/{id}/": (lambda w: {"id": w["rule"].pk}, None),
    "POST /api/v1/promotions/": (
        lambda w: {},
        {"pipeline": None, "version": 2, "source": "development", "reason": "monthly close"},
    ),
    "POST /api/v1/promotions/{id}/approve/": (lambda w: {"id": w["promotion"].pk}, {"comment": "looks right"}),
    "POST /api/v1/promotions/{id}/reject/": (lambda w: {"id": w["promotion"].pk}, {"comment": "wrong table"}),
    "POST /api/v1/promotions/{id}/cancel/": (lambda w: {"id": w["promotion"].pk}, {"comment": "not yet"}),
    "POST /api/v1/promotions/{id}/retry/": (lambda w: {"id": w["failed_promotion"].pk}, None),
    "POST /api/v1/promotions/{id}/override-freeze/": (lambda w: {"id": w["promotion"].pk}, {"reason": "hotfix"}),
    "POST /api/v1/deployments/{id}/rollback/": (
        lambda w: {"id": w["rollback_deployment"].pk},
        {"reason": "wrong totals"},
    ),
    "POST /api/v1/repositories/": (
        lambda w: {},
        {"pipeline": None, "clone_url": "file:///srv/git/spare.git", "definition_path": "pipelines/spare.yaml"},
    ),
    "PATCH /api/v1/repositories/{id}/": (lambda w: {"id": w["repository"].pk}, {"default_branch": "trunk"}),
    "DELETE /api/v1/repositories/{id}/": (lambda w: {"id": w["repository"].pk}, None),
    "POST /api/v1/repositories/{id}/sync/": (lambda w: {"id": w["repository"].pk}, None),
    "PATCH /api/v1/schedules/{id}/": (lambda w: {"id": w["schedule"].pk}, {"cron": "0 8 * * *"}),
    "DELETE /api/v1/schedules/{id}/": (lambda w: {"id": w["schedule"].pk}, None),
    "POST /api/v1/triggers/": (
        lambda w: {},
        {"pipeline": None, "environment": "staging", "kind": "webhook", "signing_secret": "db_password"},
    ),
    "PATCH /api/v1/triggers/{id}/": (lambda w: {"id": w["trigger"].pk}, {"enabled": False}),
    "DELETE /api/v1/triggers/{id}/": (lambda w: {"id": w["trigger"].pk}, None),
    "POST /api/v1/triggers/hooks/{token}/": (lambda w: {"token": w["hook"].token}, {"parameters": {}}),
}

# Bodies that need ids of objects made by the world (filled in by _valid_body).
BODY_IDS = {
    "POST /api/v1/pipelines/": ("project", "project"),
    "POST /api/v1/variable-overrides/": ("variable", "variable"),
    "POST /api/v1/personal-overrides/": ("variable", "variable"),
    "POST /api/v1/connection-bindings/": ("role", "role"),
    "POST /api/v1/runs/": ("pipeline", "pipeline"),
    "POST /api/v1/deployments/": ("pipeline", "pipeline"),
    "POST /api/v1/schedules/": ("pipeline", "pipeline"),
    "POST /api/v1/triggers/": ("pipeline", "pipeline"),
    "POST /api/v1/promotions/": ("pipeline", "invoices"),
    "POST /api/v1/repositories/": ("pipeline", "spare_pipeline"),
}


def _url(op, world, client) -> str:
    """The operation's URL with path parameters naming existing objects (else the test is skipped:
    a 404 before validation says nothing about bad input)."""
    path = op[1]
    names = [part[1:-1] for part in path.split("/") if part.startswith("{")]
    entry = VALID.get(_op_id(op))
    if entry:
        params = entry[0](world)
    elif names == ["id"]:
        collection = path.split("{id}")[0]
        rows = client.get(collection).json().get("results") or []
        if not rows:
            pytest.skip(f"no object under {collection} to write to; add a known-good request to VALID")
        params = {"id": rows[0]["id"]}
    elif names:
        pytest.skip("nested path parameters need a known-good request in VALID")
    else:
        params = {}
    for name in names:
        path = path.replace("{" + name + "}", str(params[name]))
    return path


def _valid_body(op, world) -> dict:
    entry = VALID.get(_op_id(op))
    body = dict(entry[1] or {}) if entry else {}
    if _op_id(op) in BODY_IDS:
        field, key = BODY_IDS[_op_id(op)]
        body[field] = world[key].pk
    return body


def snapshot() -> dict:
    """Every row of every project model (and users, groups, guardian): 'nothing written' is
    'this is unchanged'. The raw rows, by SQL compiled once: compiling ~70 querysets for every
    request cost twenty times the queries themselves."""
    result = {}
    with connection.cursor() as cursor:
        for label, sql, params in _snapshot_queries(connection.vendor):
            cursor.execute(sql, params)
            result[label] = cursor.fetchall()
    return result


@functools.cache
def _snapshot_queries(vendor: str) -> list[tuple[str, str, tuple]]:
    models = [
        m
        for m in django_apps.get_models()
        if m.__module__.startswith("apps.") or m._meta.app_label in {"auth", "guardian"}
    ]
    queries = []
    for model in models:
        fields = [field.attname for field in model._meta.concrete_fields]
        sql, params = model._base_manager.order_by("pk").values_list(*fields).query.sql_with_params()
        queries.append((model._meta.label, sql, params))
    return queries


def send(client, method: str, url: str, body, *, raw: bytes | str | None = None):
    data = raw if raw is not None else (json.dumps(body) if body is not None else "")
    return client.generic(method, url, data, content_type="application/json")


def assert_refused(response, before, *, field: str | None = None, status: int = 400) -> dict:
    assert response.status_code == status, (response.status_code, response.content[:500])
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert isinstance(error["code"], str) and error["code"]
    assert isinstance(error["message"], str) and error["message"]
    if field is not None:
        assert field in error.get("fields", {}), error
    assert snapshot() == before, "a refused request changed the database"
    return error


def _string_properties(request_schema: dict) -> dict:
    return {
        name: prop
        for name, prop in request_schema["properties"].items()
        if not prop.get("readOnly") and _resolve(prop).get("type") == "string"
    }


# --- the control: the known-good requests succeed -------------------------------------------


@pytest.mark.parametrize("op", [op for op in OPERATIONS if _op_id(op) in VALID], ids=_op_id)
def test_the_valid_request_succeeds(api, world, op):
    """Without this, 'nothing written' below could pass because the request never worked."""
    client = _client(api, world, op)
    response = send(
        client, op[0], _url(op, world, client), _valid_body(op, world) if VALID[_op_id(op)][1] is not None else None
    )
    assert 200 <= response.status_code < 300, response.content[:500]


def test_valid_examples_name_real_operations():
    """A renamed or removed endpoint must not leave its example behind unnoticed."""
    known = {_op_id(op) for op in OPERATIONS}
    assert set(VALID) <= known, sorted(set(VALID) - known)


# --- bad bodies -----------------------------------------------------------------------------


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=_op_id)
def test_unknown_field(api, world, op):
    client = _client(api, world, op)
    url = _url(op, world, client)
    before = snapshot()
    body = {**_valid_body(op, world), "no_such_field": "x"}
    assert_refused(send(client, op[0], url, body), before, field="no_such_field")


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=_op_id)
def test_nul_byte_in_json_values(api, world, op):
    client = _client(api, world, op)
    url = _url(op, world, client)
    strings = _string_properties(op[2])
    if not strings:
        pytest.skip("no string field in this body")
    before = snapshot()
    for name in strings:
        body = {**_valid_body(op, world), name: "ab\x00cd"}
        assert_refused(send(client, op[0], url, body), before, field=name)
    lists = [
        name
        for name, prop in op[2]["properties"].items()
        if _resolve(prop).get("type") == "array"
        and _resolve(_resolve(prop).get("items", {})).get("type") in ("string", None)
    ]
    for name in lists:
        body = {**_valid_body(op, world), name: ["a\x00"]}
        assert_refused(send(client, op[0], url, body), before, field=name)


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=_op_id)
def test_oversize_strings(api, world, op):
    client = _client(api, world, op)
    url = _url(op, world, client)
    limited = {name: prop for name, prop in _string_properties(op[2]).items() if "maxLength" in prop}
    if not limited:
        pytest.skip("no length-limited string field in this body")
    before = snapshot()
    for name, prop in limited.items():
        # Spaces are trimmed by DRF before its own length check: the published limit is about what
        # was sent, so padding with spaces must be refused too.
        for value in ("x" * (prop["maxLength"] + 1), "x" + " " * prop["maxLength"]):
            body = {**_valid_body(op, world), name: value}
            assert_refused(send(client, op[0], url, body), before, field=name)


_WRONG_VALUES = {
    "string": [12345, True, {"a": 1}, ["x"]],
    "integer": ["12", 1.5, True, {"a": 1}],
    "number": ["1.5", True, [1]],
    "boolean": ["true", 1, "yes"],
    "array": ["x", {"a": 1}, 3],
    "object": ["x", [1], 3],
}


def _json_type(prop: dict) -> str | None:
    prop = _resolve(prop)
    if "type" in prop:
        return prop["type"]
    options = [_resolve(p) for p in prop.get("oneOf", prop.get("allOf", prop.get("anyOf", [])))]
    types = {p.get("type", "string" if "enum" in p else None) for p in options} - {None}
    return types.pop() if len(types) == 1 else None


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=_op_id)
def test_wrong_json_types(api, world, op):
    client = _client(api, world, op)
    url = _url(op, world, client)
    before = snapshot()
    checked = 0
    for name, prop in op[2]["properties"].items():
        if prop.get("readOnly"):
            continue
        for value in _WRONG_VALUES.get(_json_type(prop), []):
            body = {**_valid_body(op, world), name: value}
            response = send(client, op[0], url, body)
            assert response.status_code == 400, (name, value, response.content[:300])
            assert_refused(response, before, field=name)
            checked += 1
    assert checked, "no typed field found in the request schema"


INVALID_BODIES = ['{"name": ', "not json", "[1, 2", '{"a": 1}}', "\x00", '"just a string"', "[]", "null", "42"]


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=_op_id)
def test_invalid_json_or_not_an_object(api, world, op):
    client = _client(api, world, op)
    url = _url(op, world, client)
    before = snapshot()
    for raw in INVALID_BODIES:
        assert_refused(send(client, op[0], url, None, raw=raw), before)


@pytest.mark.parametrize("op", BODY_OPERATIONS, ids=_op_id)
def test_body_over_the_upload_limit(api, world, op):
    client = _client(api, world, op)
    url = _url(op, world, client)
    limit = django_settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    body = {**_valid_body(op, world), "padding": "x" * (limit + 1)}
    before = snapshot()
    error = assert_refused(send(client, op[0], url, body), before)
    assert "too large" in error["message"]


# --- NUL bytes in the URL -------------------------------------------------------------------


NUL_QUERIES = {"q=a%00b": "q", "organization=%00": "organization", "x%00y=1": "xy", "page=1&search=%00": "search"}


@pytest.mark.parametrize("op", OPERATIONS, ids=_op_id)
def test_nul_byte_in_query_string(api, world, op):
    client = _client(api, world, op)
    url = _url(op, world, client)
    body = _valid_body(op, world) or None
    before = snapshot()
    for query, field in NUL_QUERIES.items():
        assert_refused(send(client, op[0], f"{url}?{query}", body), before, field=field)


@pytest.mark.parametrize("op", [op for op in OPERATIONS if "{id}" in op[1]], ids=_op_id)
def test_nul_byte_in_path(api, world, op):
    client = _client(api, world, op)
    url = _url(op, world, client)
    prefix, pk, rest = url.split("/", 5)[:4], url.split("/")[4], url.split("/", 5)[5]
    url = "/".join([*prefix, f"{pk}{quote(chr(0))}", rest])
    before = snapshot()
    assert_refused(send(client, op[0], url, _valid_body(op, world) or None), before)


# --- bad query parameters on lists ----------------------------------------------------------

LIST_OPERATIONS = sorted(
    (path, operation.get("parameters", []))
    for path, operations in SCHEMA["paths"].items()
    for method, operation in operations.items()
    if method == "get" and any(p["name"] == "page" for p in operation.get("parameters", []))
)


def _bad_query_values(parameter: dict) -> list[str]:
    schema = _resolve(parameter.get("schema", {}))
    if parameter["name"] == "page":
        return ["abc", "0", "-1", "1.5", ""]
    if parameter["name"] == "page_size":
        return ["abc", "0", str(schema.get("maximum", 500) + 1), "1e3", ""]
    if schema.get("type") == "boolean":
        return ["maybe", "", "2", "null"]
    if "enum" in schema:
        return ["no-such-choice", ""]
    if schema.get("type") == "integer":
        return ["abc", ""]
    return []


@pytest.mark.parametrize("path, parameters", LIST_OPERATIONS, ids=[p for p, _ in LIST_OPERATIONS])
def test_unreadable_query_parameters_are_refused(api, world, path, parameters):
    """django-filter and DRF pagination silently ignore what they cannot read; the API refuses it."""
    client = api(world["admin"])
    if "{" in path:
        pytest.skip("nested list")
    checked = 0
    for parameter in parameters:
        if parameter.get("in") != "query":
            continue
        for value in _bad_query_values(parameter):
            response = client.get(path, {parameter["name"]: value})
            assert response.status_code == 400, (parameter["name"], value, response.content[:300])
            assert parameter["name"] in response.json()["error"]["fields"], response.content
            checked += 1
    assert checked
    assert client.get(path, {"page": "1", "page_size": "1"}).status_code == 200
