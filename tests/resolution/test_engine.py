"""Interpolation, secrets, as-of, caching and the query bound of the resolution engine."""

import json
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.core.errors import PermissionDenied
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.resolution import engine
from apps.resolution import services as resolution_services
from apps.variables import services as variable_services
from apps.variables.models import Variable, VariableOverride


def define(org, actor, name, value, **kw):
    return variable_services.variable_create(
        actor=actor, organization=org, name=name, type=kw.pop("type", "string"), default_value=value, **kw
    )


def test_interpolation_follows_references(configured, org, org_admin, pipeline, stages):
    define(org, org_admin, "warehouse", "wh_{{ db_schema }}")
    define(org, org_admin, "table_path", "{{ warehouse }}.orders")
    variables = engine.resolve(pipeline, stages["production"])["variables"]
    assert variables["table_path"]["value"] == "wh_prod.orders"


def test_cycle_is_an_error_naming_the_chain(configured, org, org_admin, pipeline, stages):
    define(org, org_admin, "alpha", "{{ beta }}")
    define(org, org_admin, "beta", "x-{{ gamma }}")
    define(org, org_admin, "gamma", "{{ alpha }}")
    answer = engine.resolve(pipeline, stages["development"])
    messages = [e["message"] for e in answer["errors"] if e["code"] == "interpolation"]
    assert any("alpha → beta → gamma → alpha" in m for m in messages), messages


def test_unknown_name_is_an_error_naming_the_chain(configured, org, org_admin, pipeline, stages):
    define(org, org_admin, "outer", "{{ inner }}")
    define(org, org_admin, "inner", "{{ missing_thing }}")
    answer = engine.resolve(pipeline, stages["development"])
    errors = [e for e in answer["errors"] if e["path"] == "variables.outer"]
    assert (
        errors and "missing_thing" in errors[0]["message"] and "outer → inner → missing_thing" in errors[0]["message"]
    )


def test_graph_text_fields_and_binding_params_are_interpolated(configured, pipeline, stages):
    answer = engine.resolve(pipeline, stages["staging"])
    assert answer["graph"]["nodes"][1]["table"] == "stg_mart.orders"
    assert answer["connections"]["analytics_warehouse"]["params"]["path"] == "stg_analytics_warehouse.sqlite3"


def test_missing_required_and_unbound_role_reported(org, org_admin, pipeline, version, stages):
    define(org, org_admin, "db_schema", None, required_in=["production"])
    answer = engine.resolve(pipeline, stages["production"])
    codes = {e["code"] for e in answer["errors"]}
    assert {"missing_required", "unknown_role"} <= codes


def test_secrets_redacted_for_viewers_and_materialized_only_for_executors(
    configured, org, org_admin, pipeline, stages, canary_secret, members, service_account
):
    secret_var = variable_services.variable_create(
        actor=org_admin, organization=org, name="api_password", type="secret"
    )
    variable_services.variable_override_set(
        actor=org_admin, variable=secret_var, environment=stages["production"], secret=canary_secret
    )
    viewer = resolution_services.resolve_for(org_admin, pipeline, stages["production"])
    assert viewer["variables"]["api_password"]["secret"] == "secret://warehouse_password"
    assert viewer["variables"]["api_password"]["value"] is None
    assert "CANARY" not in json.dumps(viewer)

    executor = service_account.user
    with pytest.raises(PermissionDenied):
        resolution_services.resolve_for_executor(executor, pipeline, stages["production"])
    env_services.permission_grant(
        actor=org_admin, environment=stages["production"], codename=perms.USE_CREDENTIALS, user=executor
    )
    executor.refresh_from_db()
    answer = resolution_services.resolve_for_executor(executor, pipeline, stages["production"])
    assert answer["variables"]["api_password"]["value"] == "CANARY-s3cr3t-VALUE-9f8e7d"
    assert answer["connections"]["reporting_db"]["credential_value"] == "CANARY-s3cr3t-VALUE-9f8e7d"
    assert answer["redacted"] is False
    # A materialized answer is never cached: the next viewer read is redacted again.
    assert "CANARY" not in json.dumps(resolution_services.resolve_for(org_admin, pipeline, stages["production"]))


def test_secret_not_allowed_in_environment_is_an_error(configured, org, org_admin, pipeline, stages, canary_secret):
    var = variable_services.variable_create(
        actor=org_admin, organization=org, name="dev_token", type="secret", default_secret=canary_secret
    )
    assert var.default_secret == canary_secret
    answer = engine.resolve(pipeline, stages["development"])
    assert any(e["code"] == "secret_not_allowed" and e["path"] == "variables.dev_token" for e in answer["errors"])


def test_cache_is_invalidated_by_every_write(configured, org_admin, pipeline, stages):
    production = stages["production"]
    assert engine.resolve(pipeline, production)["variables"]["db_schema"]["value"] == "prod"
    with CaptureQueriesContext(connection) as warm:
        engine.resolve(pipeline, production)
    assert len(warm) <= 2
    override = VariableOverride.objects.get(variable=configured, environment=production)
    variable_services.variable_override_set(actor=org_admin, variable=configured, environment=production, value="p2")
    assert engine.resolve(pipeline, production)["variables"]["db_schema"]["value"] == "p2"
    env_services.runtime_policy_update(actor=org_admin, environment=production, max_rows=5)
    assert engine.resolve(pipeline, production)["policy"]["max_rows"] == 5
    assert override.pk


def test_as_of_rebuilds_from_history(configured, org_admin, pipeline, stages):
    production = stages["production"]
    before = timezone.now()
    time.sleep(0.01)  # history timestamps must differ from `before`; not a timing assertion
    variable_services.variable_override_set(actor=org_admin, variable=configured, environment=production, value="p9")
    variable_services.variable_create(
        actor=org_admin, organization=configured.organization, name="late", type="string", default_value="x"
    )
    then = engine.resolve(pipeline, production, as_of=before)
    now = engine.resolve(pipeline, production)
    assert then["variables"]["db_schema"]["value"] == "prod"
    assert "late" not in then["variables"]
    assert now["variables"]["db_schema"]["value"] == "p9"
    assert then["connections"]["reporting_db"]["credential"] == "secret://warehouse_password"


def _comparable(answer: dict) -> dict:
    return {key: value for key, value in answer.items() if key not in ("as_of", "resolved_at", "config_revision")}


def test_as_of_reads_raw_rows_and_answers_as_live_did_then(configured, org, org_admin, pipeline, stages, monkeypatch):
    """load_as_of reads the variables, overrides and secrets as raw rows (as load_live does, no
    model instance per row) and answers what a live resolve answered at that moment."""
    production = stages["production"]
    typed = variable_services.variable_create(
        actor=org_admin, organization=org, name="batch", type="integer", default_value=5, min_value=1, max_value=9
    )
    listed = variable_services.variable_create(
        actor=org_admin, organization=org, name="mode", type="string", default_value="a", choices=["a", "b"]
    )
    variable_services.variable_override_set(actor=org_admin, variable=typed, environment=production, value=7)
    doomed = variable_services.variable_create(
        actor=org_admin, organization=org, name="doomed", type="string", default_value="x"
    )
    live_then = engine.resolve(pipeline, production, use_cache=False)
    moment = timezone.now()
    time.sleep(0.01)  # history timestamps must differ from `moment`; not a timing assertion
    variable_services.variable_override_set(actor=org_admin, variable=typed, environment=production, value=8)
    variable_services.variable_update(actor=org_admin, variable=listed, default_value="b")
    variable_services.variable_delete(actor=org_admin, variable=doomed)
    override = VariableOverride.objects.get(variable=configured, environment=production)
    variable_services.variable_override_delete(actor=org_admin, override=override)

    def no_instances(*args, **kwargs):
        raise AssertionError("load_as_of built a model instance per history row")

    for model in (Variable, VariableOverride):
        monkeypatch.setattr(model.history.model, "from_db", classmethod(no_instances))
    then = engine.resolve(pipeline, production, as_of=moment)
    assert _comparable(then) == _comparable(live_then)
    assert then["variables"]["batch"]["value"] == 7 and then["variables"]["doomed"]["value"] == "x"
    assert then["variables"]["db_schema"]["value"] == "prod"


def _bulk(org, environment, count, start=0):
    variables = Variable.objects.bulk_create(
        [
            Variable(organization=org, name=f"bulk_{i:05d}", type="string", default_value=f"d{i}")
            for i in range(start, start + count)
        ]
    )
    VariableOverride.objects.bulk_create(
        [VariableOverride(variable=v, environment=environment, value=f"o{v.name}") for v in variables]
    )


@pytest.mark.parametrize("count", [10, 2000])
def test_query_count_does_not_grow_with_variables(
    count, configured, org, pipeline, stages, django_assert_max_num_queries
):
    _bulk(org, stages["staging"], count)
    with django_assert_max_num_queries(8):
        answer = engine.resolve(pipeline, stages["staging"], use_cache=False)
    assert len(answer["variables"]) == count + 1
    assert answer["variables"]["bulk_00003"]["value"] == "obulk_00003"
