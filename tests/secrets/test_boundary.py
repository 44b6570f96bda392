"""The rest of the boundary: run-time refusal of text that became secret after it was saved, the
closure through other variables, external engines' reports, connection-test messages, binding
URLs carrying tokens, and credential columns kept out of history."""

import base64
import re
from unittest import mock

import pytest
from django.apps import apps

from apps.connections import services as connection_services
from apps.core.errors import ValidationFailed
from apps.notifications import services as notification_services
from apps.notifications.models import Channel, Delivery
from apps.pipelines import services as pipeline_services
from apps.resolution import connection_tests, engine
from apps.runs import services as run_services
from apps.runs.models import RunStatus
from apps.variables import services as variable_services

from .conftest import canary_graph as _graph

pytestmark = pytest.mark.django_db


def _string(org, org_admin, name, value):
    return variable_services.variable_create(
        actor=org_admin, organization=org, name=name, type="string", default_value=value
    )


def _make_secret(org_admin, variable, secret):
    return variable_services.variable_update(
        actor=org_admin, variable=variable, type="secret", default_value=None, default_secret=secret
    )


def test_text_saved_before_its_variable_became_secret_is_refused_when_it_resolves(
    world, org, org_admin, stages, tmp_path
):
    folder = _string(org, org_admin, "folder", "data")
    _string(org, org_admin, "label", "run-{{ folder }}")
    connection_services.connection_binding_set(
        actor=org_admin,
        role=world["roles"]["reporting"],
        environment=stages["development"],
        params={"path": "{{ folder }}.sqlite3"},
    )
    pipeline_services.pipeline_version_create(actor=org_admin, pipeline=world["pipeline"], graph=_graph())
    _make_secret(org_admin, folder, world["secret"])
    answer = engine.resolve(world["pipeline"], stages["development"])
    refused = {e["path"]: e["message"] for e in answer["errors"] if e["code"] == "secret_interpolation"}
    assert set(refused) == {"connections.reporting.params", "variables.label"}, answer["errors"]
    assert "'folder' is a secret" in refused["variables.label"]


def test_a_variable_that_interpolates_a_secret_is_refused_in_graph_text(world, org, org_admin):
    inner = _string(org, org_admin, "inner", "orders")
    _string(org, org_admin, "outer", "{{ inner }}")
    _make_secret(org_admin, inner, world["secret"])
    with pytest.raises(ValidationFailed) as exc:
        pipeline_services.pipeline_version_create(
            actor=org_admin, pipeline=world["pipeline"], graph=_graph("SELECT * FROM {{ outer }}")
        )
    assert "graph.nodes[orders_src].query" in exc.value.fields and "'outer'" in exc.value.message
    assert not world["pipeline"].versions.exists()


def test_an_external_engines_reports_are_masked(world, canary, org_admin, stages):
    pipeline_services.pipeline_version_create(actor=org_admin, pipeline=world["pipeline"], graph=_graph())
    run = run_services.run_create(
        actor=org_admin, pipeline=world["pipeline"], environment=stages["development"], executor_kind="external"
    )
    run, configuration = run_services.run_claim_external(actor=org_admin, run=run, claimer="engine-1")
    assert configuration["connections"]["warehouse"]["credential_value"] == canary  # handed out by design
    progress = run_services.run_report_external(
        actor=org_admin, run=run, claimer="engine-1", status="running", log_excerpt=f"connected with {canary}"
    )
    assert progress.log_excerpt == "connected with «secret:canary_pw»"
    encoded = base64.b64encode(canary.encode()).decode()
    done = run_services.run_report_external(
        actor=org_admin,
        run=run,
        claimer="engine-1",
        status="failed",
        metrics={"orders_out": {"table": f"t_{canary}"}},
        error=f"auth failed: {encoded}",
    )
    assert done.status == RunStatus.FAILED
    assert done.metrics == {"orders_out": {"table": "t_«secret:canary_pw»"}}
    assert done.error == "auth failed: «secret:canary_pw»"
    assert canary not in repr(list(Delivery.objects.values("payload")))


def test_a_connection_tests_message_is_masked(world, canary, org_admin, stages, django_capture_on_commit_callbacks):
    binding = world["roles"]["warehouse"].bindings.get(environment=stages["development"])
    with django_capture_on_commit_callbacks(execute=False):
        test = connection_services.connection_test_request(actor=org_admin, binding=binding)
    with mock.patch(
        "apps.connections.connectors.check", lambda kind, params, password, **_: (False, f"no: {password}")
    ):
        test = connection_tests.run(test.pk)
    assert test.message == "no: «secret:canary_pw»"


@pytest.mark.parametrize(
    "url", ["https://api.example.com/v1?api_key=abc123", "https://user:pw@api.example.com/", "https://x.io/?Token=1"]
)
def test_binding_urls_carrying_credentials_are_refused(org, org_admin, stages, url):
    role = connection_services.connection_role_create(actor=org_admin, organization=org, name="api", kind="http")
    with pytest.raises(ValidationFailed) as exc:
        connection_services.connection_binding_set(
            actor=org_admin, role=role, environment=stages["development"], params={"base_url": url}
        )
    assert "params.base_url" in exc.value.fields
    assert not role.bindings.exists()


def test_a_webhook_url_is_kept_out_of_history_with_a_masked_form_and_a_fingerprint(org, org_admin):
    channel, _ = notification_services.channel_create(
        actor=org_admin, organization=org, name="hook", kind="webhook", target="https://hooks.example.com/t/AAA111"
    )
    notification_services.channel_update(actor=org_admin, channel=channel, target="https://hooks.example.com/t/BBB222")
    rows = list(Channel.history.filter(id=channel.pk).values())
    assert len(rows) == 2 and all("target" not in row for row in rows)
    assert {row["target_display"] for row in rows} == {"https://hooks.example.com/…"}
    assert len({row["target_fingerprint"] for row in rows}) == 2
    assert "AAA111" not in repr(rows) and "BBB222" not in repr(rows)


CREDENTIAL_COLUMN = re.compile(r"ciphertext|key_hash|password|token|^target$")


def test_no_history_table_keeps_a_credential_column():
    """Columns holding a credential or a secret-bearing value are excluded from every history."""
    kept = [
        f"{model._meta.label}.{field.name}"
        for model in apps.get_models()
        if model.__name__.startswith("Historical")
        for field in model._meta.fields
        if not field.is_relation and CREDENTIAL_COLUMN.search(field.name)
    ]
    assert kept == []
