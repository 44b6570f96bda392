"""The runs API: runs (create, list, detail, cancel, claim/report, preview), deployments and schedules.
Happy paths, bad input (400 naming the field, nothing written), permissions, the secret canary and
a query-count guard on the run list."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.connections import services as connection_services
from apps.connections.models import ConnectionRole
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.pipelines import services as pipeline_services
from apps.runs import services
from apps.runs.models import Deployment, Run, RunStatus, Schedule
from apps.secrets import services as secret_services
from apps.tenancy import services as tenancy_services
from apps.variables import services as variable_services

from .conftest import GRAPH

RUNS = "/api/v1/runs/"
DEPLOYMENTS = "/api/v1/deployments/"
SCHEDULES = "/api/v1/schedules/"
CANARY = "CANARY-7f3a-reporting-pw-do-not-leak"


def detail(run_id, action=None):
    return f"{RUNS}{run_id}/" + (f"{action}/" if action else "")


def error_fields(response) -> dict:
    return response.json()["error"].get("fields", {})


@pytest.fixture
def pipeline(run_setup, org_admin, stages):
    """The runs pipeline, v1 deployed in production (production runs only its deployed version)."""
    services.deploy(
        actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["production"], version=run_setup["version"]
    )
    return run_setup["pipeline"]


@pytest.fixture
def canary(org, org_admin, stages, run_setup):
    """The reporting role's credential in staging is a local secret holding CANARY."""
    secret = secret_services.secret_create(
        actor=org_admin, organization=org, name="reporting_pw", value=CANARY, allowed_environments=[stages["staging"]]
    )
    role = ConnectionRole.objects.get(organization=org, name="reporting")
    connection_services.connection_binding_set(
        actor=org_admin,
        role=role,
        environment=stages["staging"],
        params={"path": str(run_setup["paths"]["staging"]["target"])},
        credential=secret,
    )
    return secret


# --- creating runs ------------------------------------------------------------------------------------


def test_create_in_the_default_environment(api, pipeline, members, stages):
    response = api(members["developer"]).post(RUNS, {"pipeline": pipeline.pk, "parameters": {}}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "queued" and body["environment"] == "development" and body["version"] == 1
    assert body["trigger"] == "manual" and body["executor"] == "builtin" and body["requested_by"] == "dev"
    assert body["configuration"]["redacted"] is True
    run = Run.objects.get(pk=body["id"])
    assert run.environment == stages["development"]


def test_create_with_version_environment_sample_and_validation(api, org_admin, pipeline, stages):
    pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=GRAPH, message="same")
    payload = {"pipeline": pipeline.pk, "environment": "staging", "version": 1, "sample": True, "validation": True}
    response = api(org_admin).post(RUNS, payload, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["version"], body["environment"], body["sample"], body["trigger"]) == (1, "staging", True, "validation")


def test_policy_rejection_is_201_with_status_rejected_and_reason(api, org_admin, pipeline, stages, run_setup):
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], allowed_destinations=["s3"])
    response = api(org_admin).post(RUNS, {"pipeline": pipeline.pk, "environment": "staging"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "rejected" and "allowed_destinations" in body["error"]
    assert not run_setup["paths"]["staging"]["target"].exists()


def test_not_ready_configuration_is_400_naming_the_path(api, org, org_admin, pipeline, stages):
    variable_services.variable_create(
        actor=org_admin, organization=org, name="target_region", type="string", required_in=["staging"]
    )
    response = api(org_admin).post(RUNS, {"pipeline": pipeline.pk, "environment": "staging"}, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "not_ready" and any("target_region" in name for name in error["fields"])
    assert not Run.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"pipeline": "one"}, "pipeline"),
        ({}, "pipeline"),
        ({"pipeline": 999999}, "pipeline"),
        ({"environment": "nowhere"}, "environment"),
        ({"version": 42}, "version"),
        ({"version": 0}, "version"),
        ({"executor": "spark"}, "executor"),
        ({"parameters": ["a"]}, "parameters"),
        ({"sample": "yes"}, "sample"),
        ({"priority": 1}, "priority"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, org_admin, pipeline, payload, field):
    body = {"pipeline": pipeline.pk, **payload} if "pipeline" not in payload and payload else payload
    response = api(org_admin).post(RUNS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in error_fields(response)
    assert not Run.objects.exists()


def test_developer_cannot_run_in_production(api, members, pipeline):
    response = api(members["developer"]).post(RUNS, {"pipeline": pipeline.pk, "environment": "production"})
    assert response.status_code == 403
    assert "run_in_environment" in response.json()["error"]["message"]
    assert not Run.objects.exists()


def test_outsider_sees_nothing(api, outsider, org_admin, pipeline):
    run = services.run_create(actor=org_admin, pipeline=pipeline)
    client = api(outsider)
    assert client.get(detail(run.pk)).status_code == 404
    assert client.post(detail(run.pk, "cancel")).status_code == 404
    assert client.get(RUNS).json()["results"] == []
    response = client.post(RUNS, {"pipeline": pipeline.pk})
    assert response.status_code == 400 and "pipeline" in error_fields(response)
    assert Run.objects.count() == 1


def test_run_key_starts_runs_but_reads_nothing_else(api, run_key, pipeline, stages):
    _, token = run_key
    client = api(token=token)
    response = client.post(RUNS, {"pipeline": pipeline.pk}, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["trigger"] == "api" and response.json()["requested_by"].startswith("svc-")
    assert client.get(RUNS).status_code == 403
    assert client.post(detail(response.json()["id"], "cancel")).status_code == 200


def test_write_key_cannot_start_runs(api, org, org_admin, pipeline):
    _, token = tenancy_services.api_key_create(actor=org_admin, organization=org, name="writer", scopes=["write"])
    response = api(token=token).post(RUNS, {"pipeline": pipeline.pk}, format="json")
    assert response.status_code == 403 and "'run' scope" in response.json()["error"]["message"]
    assert not Run.objects.exists()


# --- reading runs ---------------------------------------------------------------------------------------


def test_detail_has_metrics_and_the_baseline_comparison(api, org_admin, pipeline, stages):
    production = services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["production"])
    assert services.run_execute(production.pk).status == RunStatus.SUCCEEDED
    client = api(org_admin)
    created = client.post(RUNS, {"pipeline": pipeline.pk, "environment": "staging", "validation": True}, format="json")
    run = services.run_execute(created.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.error
    body = client.get(detail(run.pk)).json()
    assert body["metrics"]["orders_out"]["row_count"] == 100
    assert body["baseline"]["baseline_run"] == production.pk and body["baseline"]["passed"] is True
    assert body["baseline"]["destinations"]["orders_out"]["hash_equal"] is True
    assert "orders_src" in body["log_excerpt"]


def test_list_filters(api, org_admin, members, pipeline, stages):
    queued = services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["staging"])
    cancelled = services.run_cancel(
        actor=org_admin, run=services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["development"])
    )
    client = api(org_admin)

    def ids(**params):
        response = client.get(RUNS, params)
        assert response.status_code == 200, response.content
        return {row["id"] for row in response.json()["results"]}

    assert ids() == {queued.pk, cancelled.pk}
    assert ids(environment="staging") == {queued.pk}
    assert ids(status="cancelled") == {cancelled.pk}
    assert ids(pipeline=pipeline.pk, trigger="manual") == {queued.pk, cancelled.pk}
    assert ids(created_after="2000-01-01T00:00:00Z", created_before="2999-01-01T00:00:00Z") == {queued.pk, cancelled.pk}
    assert ids(created_after="2999-01-01T00:00:00Z") == set()
    # the developer may view development only
    assert {row["id"] for row in api(members["developer"]).get(RUNS).json()["results"]} == {cancelled.pk}
    for bad in ({"status": "bogus"}, {"created_after": "yesterday"}, {"trigger": ""}):
        response = client.get(RUNS, bad)
        assert response.status_code == 400 and set(bad) <= set(error_fields(response))


def test_list_query_count_does_not_grow_with_rows(api, org_admin, pipeline, stages, django_assert_max_num_queries):
    client = api(org_admin)
    for _ in range(2):
        services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["staging"])
    with CaptureQueriesContext(connection) as few:
        assert client.get(RUNS).status_code == 200
    for environment in stages.values():
        for _ in range(5):
            services.run_create(actor=org_admin, pipeline=pipeline, environment=environment)
    with django_assert_max_num_queries(len(few.captured_queries)):
        response = client.get(RUNS)
    assert len(response.json()["results"]) == 17 and "count" not in response.json()


def test_no_secret_value_in_run_responses(api, org_admin, pipeline, stages, canary):
    client = api(org_admin)
    created = client.post(RUNS, {"pipeline": pipeline.pk, "environment": "staging"}, format="json")
    assert created.status_code == 201, created.content
    run = services.run_execute(created.json()["id"])
    assert run.status == RunStatus.SUCCEEDED, run.error
    responses = [created, client.get(RUNS), client.get(detail(run.pk)), client.get(RUNS, {"environment": "staging"})]
    for response in responses:
        assert CANARY not in response.content.decode()
    body = client.get(detail(run.pk)).json()
    assert body["configuration"]["connections"]["reporting"]["credential"] == canary.display_reference
    assert CANARY not in json.dumps(Run.objects.get(pk=run.pk).resolved)


# --- cancel -------------------------------------------------------------------------------------------------


def test_cancel_a_queued_run_then_again_is_409(api, members, pipeline):
    client = api(members["developer"])
    run_id = client.post(RUNS, {"pipeline": pipeline.pk}, format="json").json()["id"]
    response = client.post(detail(run_id, "cancel"))
    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    assert client.post(detail(run_id, "cancel")).status_code == 409


def test_viewer_without_run_rights_cannot_cancel(api, org_admin, members, pipeline, stages):
    run = services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["staging"])
    response = api(members["staging_approver"]).post(detail(run.pk, "cancel"))
    assert response.status_code == 403
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED


# --- external engines: claim and report ----------------------------------------------------------------


def _external_run(actor, pipeline, environment):
    return services.run_create(actor=actor, pipeline=pipeline, environment=environment, executor_kind="external")


def test_claim_without_credentials_permission_gets_the_redacted_configuration(
    api, org_admin, run_key, service_account, pipeline, stages, canary, grant
):
    key, token = run_key
    grant(service_account.user, stages["staging"], perms.RUN)
    run = _external_run(org_admin, pipeline, stages["staging"])
    response = api(token=token).post(detail(run.pk, "claim"))
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["run"]["status"] == "running" and body["run"]["claimed_by"] == key.prefix
    reporting = body["configuration"]["connections"]["reporting"]
    assert reporting["credential"] == canary.display_reference and "credential_value" not in reporting
    assert CANARY not in response.content.decode()


def test_claim_with_credentials_permission_gets_materialized_secrets(
    api, org, org_admin, run_key, service_account, pipeline, stages, run_setup, grant
):
    secret = secret_services.secret_create(
        actor=org_admin,
        organization=org,
        name="dev_pw",
        value="dev-value-123",
        allowed_environments=[stages["development"], stages["staging"]],
    )
    role = ConnectionRole.objects.get(organization=org, name="reporting")
    connection_services.connection_binding_set(
        actor=org_admin,
        role=role,
        environment=stages["staging"],
        params={"path": str(run_setup["paths"]["staging"]["target"])},
        credential=secret,
    )
    _, token = run_key
    grant(service_account.user, stages["staging"], perms.RUN, perms.USE_CREDENTIALS)
    run = _external_run(org_admin, pipeline, stages["staging"])
    response = api(token=token).post(detail(run.pk, "claim"))
    assert response.status_code == 200, response.content
    assert response.json()["configuration"]["connections"]["reporting"]["credential_value"] == "dev-value-123"
    # the stored snapshot and the detail stay redacted
    assert "dev-value-123" not in json.dumps(Run.objects.get(pk=run.pk).resolved)
    assert "dev-value-123" not in api(org_admin).get(detail(run.pk)).content.decode()


def test_claim_then_report_success_with_metrics(api, org_admin, run_key, pipeline, stages):
    _, token = run_key
    client = api(token=token)
    created = client.post(RUNS, {"pipeline": pipeline.pk, "executor": "external"}, format="json")
    assert created.status_code == 201 and created.json()["executor"] == "external"
    run = Run.objects.get(pk=created.json()["id"])
    assert client.post(detail(run.pk, "claim")).status_code == 200
    assert client.post(detail(run.pk, "claim")).status_code == 409
    progress = client.post(detail(run.pk, "report"), {"status": "running", "log_excerpt": "batch 1"}, format="json")
    assert progress.status_code == 200 and progress.json()["status"] == "running"
    profile = {
        "type": "number",
        "count": 3,
        "null_count": 0,
        "null_share": 0.0,
        "distinct": 3,
        "min": "0.5",
        "max": 7,
        "sum": "10.5",
        "mean": "3.5",
        "hash": "0123456789abcdef",
    }
    metrics = {
        "orders_out": {
            "row_count": 3,
            "keys_unique": True,
            "hash_total": "00000000000000ff",
            "columns": {"amount": profile},
        }
    }
    response = client.post(
        detail(run.pk, "report"), {"status": "succeeded", "metrics": metrics, "log_excerpt": "done"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "succeeded"
    saved = Run.objects.get(pk=run.pk)
    assert saved.metrics["orders_out"]["row_count"] == 3 and saved.log_excerpt == "done"
    assert saved.metrics["orders_out"]["columns"]["amount"] == profile


def _profiled(**column):
    profile = {"type": "integer", "null_count": 0, "null_share": 0.0, "distinct": 1, "sum": 1, "hash": "0" * 16}
    return {"orders_out": {"row_count": 1, "hash_total": "0" * 16, "columns": {"id": {**profile, **column}}}}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"status": "cancelled"}, "status"),
        (
            {"status": "succeeded", "metrics": {"orders_out": {"hash_total": "00000000000000ff"}}},
            "metrics.orders_out.row_count",
        ),
        (
            {"status": "succeeded", "metrics": {"orders_out": {"row_count": 1, "hash_total": "x"}}},
            "metrics.orders_out.hash_total",
        ),
        ({"status": "succeeded", "metrics": [1]}, "metrics"),
        ({"status": "succeeded", "metrics": _profiled(type="uuid")}, "metrics.orders_out.columns.id.type"),
        ({"status": "succeeded", "metrics": _profiled(null_share=1.5)}, "metrics.orders_out.columns.id.null_share"),
        ({"status": "succeeded", "metrics": _profiled(hash="zz")}, "metrics.orders_out.columns.id.hash"),
        ({"status": "succeeded", "metrics": _profiled(min=[1])}, "metrics.orders_out.columns.id.min"),
        ({"status": "succeeded", "metrics": _profiled(sum="lots")}, "metrics.orders_out.columns.id.sum"),
        ({"status": "succeeded", "metrics": _profiled(colour=1)}, "metrics.orders_out.columns.id.colour"),
        ({"status": "failed", "colour": "red"}, "colour"),
    ],
)
def test_report_bad_input_is_400_and_changes_nothing(api, org_admin, run_key, pipeline, stages, payload, field):
    _, token = run_key
    client = api(token=token)
    run = _external_run(org_admin, pipeline, stages["development"])
    client.post(detail(run.pk, "claim"))
    response = client.post(detail(run.pk, "report"), payload, format="json")
    assert response.status_code == 400, response.content
    assert field in error_fields(response)
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_only_the_claimer_reports(api, org_admin, run_key, pipeline, stages):
    _, token = run_key
    run = _external_run(org_admin, pipeline, stages["development"])
    api(token=token).post(detail(run.pk, "claim"))
    response = api(org_admin).post(detail(run.pk, "report"), {"status": "failed", "error": "x"}, format="json")
    assert response.status_code == 409
    assert Run.objects.get(pk=run.pk).status == RunStatus.RUNNING


def test_claiming_a_builtin_run_is_409(api, org_admin, run_key, pipeline):
    _, token = run_key
    run = services.run_create(actor=org_admin, pipeline=pipeline)
    assert api(token=token).post(detail(run.pk, "claim")).status_code == 409
    assert Run.objects.get(pk=run.pk).status == RunStatus.QUEUED


# --- preview ------------------------------------------------------------------------------------------------


def test_preview_in_development(api, members, pipeline):
    params = {"pipeline": pipeline.pk, "environment": "development", "node": "orders_src", "limit": 3}
    response = api(members["developer"]).get(f"{RUNS}preview/", params)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["columns"] == ["order_id", "customer_id", "amount"] and len(body["rows"]) == 3


@pytest.mark.parametrize(
    ("params", "status", "field"),
    [
        ({"environment": "production"}, 403, None),
        ({"limit": 0}, 400, "limit"),
        ({"limit": "many"}, 400, "limit"),
        ({"node": "orders_out"}, 400, "node"),
        ({"environment": "nowhere"}, 400, "environment"),
        ({"pipeline": "x"}, 400, "pipeline"),
    ],
)
def test_preview_refusals(api, org_admin, pipeline, params, status, field):
    query = {"pipeline": pipeline.pk, "environment": "development", "node": "orders_src", **params}
    response = api(org_admin).get(f"{RUNS}preview/", query)
    assert response.status_code == status, response.content
    if field:
        assert field in error_fields(response)


# --- deployments ---------------------------------------------------------------------------------------------


def test_direct_deploy_and_history(api, org_admin, pipeline, stages):
    client = api(org_admin)
    first = client.post(DEPLOYMENTS, {"pipeline": pipeline.pk, "environment": "development"}, format="json")
    assert first.status_code == 201, first.content
    assert first.json()["version"] == 1 and first.json()["is_active"] is True
    pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=GRAPH, message="v2")
    second = client.post(DEPLOYMENTS, {"pipeline": pipeline.pk, "environment": "development", "version": 2})
    assert second.status_code == 201 and second.json()["previous"] == first.json()["id"]
    assert second.json()["previous_version"] == 1
    active = client.get(DEPLOYMENTS, {"pipeline": pipeline.pk, "environment": "development", "active": "true"})
    assert [row["id"] for row in active.json()["results"]] == [second.json()["id"]]
    assert client.get(DEPLOYMENTS, {"active": "maybe"}).status_code == 400


def test_deploy_refusals(api, org_admin, members, run_key, run_setup, stages):
    pipeline = run_setup["pipeline"]  # not the fixture: nothing deployed yet
    client = api(org_admin)
    response = client.post(DEPLOYMENTS, {"pipeline": pipeline.pk, "environment": "production"}, format="json")
    assert response.status_code == 403 and "protected" in response.json()["error"]["message"]
    response = client.post(DEPLOYMENTS, {"pipeline": pipeline.pk, "environment": "development", "version": 9})
    assert response.status_code == 400 and "version" in error_fields(response)
    response = api(members["developer"]).post(DEPLOYMENTS, {"pipeline": pipeline.pk, "environment": "staging"})
    assert response.status_code == 403
    response = api(token=run_key[1]).post(DEPLOYMENTS, {"pipeline": pipeline.pk, "environment": "development"})
    assert response.status_code == 403
    assert not Deployment.objects.exists()


# --- schedules --------------------------------------------------------------------------------------------------


def test_schedule_crud(api, members, pipeline):
    client = api(members["developer"])
    created = client.post(
        SCHEDULES,
        {"pipeline": pipeline.pk, "environment": "development", "cron": "0 6 * * *", "timezone": "Europe/Berlin"},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["enabled"] is False and body["owner"] == "dev"  # not deployed yet
    url = f"{SCHEDULES}{body['id']}/"
    etag = client.get(url)["ETag"]
    changed = client.patch(url, {"cron": "30 7 * * 1-5", "enabled": True}, format="json", HTTP_IF_MATCH=etag)
    assert changed.status_code == 200, changed.content
    assert changed.json()["cron"] == "30 7 * * 1-5" and changed.json()["enabled"] is True
    stale = client.patch(url, {"cron": "0 8 * * *"}, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert client.get(SCHEDULES, {"environment": "development", "enabled": "true"}).json()["count"] == 1
    assert client.delete(url).status_code == 204
    assert not Schedule.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"cron": "every day"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"environment": "nowhere"}, "environment"),
        ({"enabled": "on"}, "enabled"),
    ],
)
def test_schedule_bad_input(api, members, pipeline, payload, field):
    body = {"pipeline": pipeline.pk, "environment": "development", "cron": "0 6 * * *", **payload}
    response = api(members["developer"]).post(SCHEDULES, body, format="json")
    assert response.status_code == 400, response.content
    assert field in error_fields(response)
    assert not Schedule.objects.exists()


def test_schedule_permissions(api, org_admin, members, run_key, pipeline, stages, grant):
    developer = members["developer"]
    body = {"pipeline": pipeline.pk, "environment": "staging", "cron": "0 6 * * *"}
    assert api(developer).post(SCHEDULES, body, format="json").status_code == 403
    assert api(token=run_key[1]).post(SCHEDULES, {**body, "environment": "development"}).status_code == 403
    # change_environment_config is enough while the environment is not locked...
    grant(developer, stages["staging"], perms.VIEW, perms.CHANGE_CONFIG)
    created = api(developer).post(SCHEDULES, body, format="json")
    assert created.status_code == 201, created.content
    # ...a locked environment's schedules need manage_schedules itself.
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], locked=True)
    url = f"{SCHEDULES}{created.json()['id']}/"
    response = api(developer).patch(url, {"cron": "0 7 * * *"}, format="json")
    assert response.status_code == 403 and "manage_schedules" in response.json()["error"]["message"]
    assert api(developer).delete(url).status_code == 403
    assert Schedule.objects.get().cron == "0 6 * * *"
    grant(developer, stages["staging"], perms.MANAGE_SCHEDULES)
    assert api(developer).patch(url, {"cron": "0 7 * * *"}, format="json").status_code == 200
