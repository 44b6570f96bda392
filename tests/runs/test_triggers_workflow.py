"""Triggers end to end with a real Celery worker: a success starts each downstream run exactly once
(chains, fan-out, a completion delivered twice, two workers and racing sweeps), a signed webhook
starts one run while a bad, stale or replayed one is refused with nothing written, deploying
switches production triggers on and a rollback switches off the ones its release brought, and a
cycle is refused naming the chain."""

import json
import threading
import time

import pytest
from django.db import connection, transaction
from django.urls import reverse

from apps.core import signing
from apps.environments import permissions as perms
from apps.pipelines import services as pipeline_services
from apps.runs import services, tasks
from apps.runs.models import TERMINAL, PipelineTrigger, Run, RunStatus, Trigger, TriggerFire, TriggerKind
from apps.secrets import services as secret_services
from apps.variables import services as variable_services
from tests import postgres as pg

from .conftest import GRAPH
from .test_workflow import wait_for_run

SIGNING_VALUE = "canary-trigger-signing-9f31c2"


def copy_graph(table: str) -> dict:
    """The fixture's graph, writing to its own table (so pipelines do not share a destination)."""
    graph = json.loads(json.dumps(GRAPH))
    graph["nodes"][1]["table"] = table
    return graph


def make_pipeline(project, actor, name: str):
    pipeline = pipeline_services.pipeline_create(actor=actor, project=project, name=name)
    version = pipeline_services.pipeline_version_create(
        actor=actor, pipeline=pipeline, graph=copy_graph(f"{pipeline.slug}_out")
    )
    return pipeline, version


def runs_of(pipeline, **filters) -> list[Run]:
    return list(Run.objects.filter(pipeline=pipeline, **filters).order_by("pk"))


def wait_for_runs(pipeline, count: int, timeout: float = 90, **filters) -> list[Run]:
    """Poll until `pipeline` has `count` terminal runs matching `filters` (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        runs = runs_of(pipeline, **filters)
        if len(runs) >= count and all(r.status in TERMINAL for r in runs):
            return runs
        if time.monotonic() > deadline:
            pytest.fail(f"{pipeline.slug}: {[(r.pk, r.status) for r in runs]} after {timeout}s, wanted {count}")
        time.sleep(0.2)


def settle(seconds: float = 2.0) -> None:
    """Give the worker time to act on anything it was (wrongly) told to do."""
    time.sleep(seconds)


@pytest.fixture
def chain(run_setup, org_admin):
    """Pipelines B and C beside the fixture's pipeline A (Orders), each with a version of its own."""
    project = run_setup["project"]
    b, b_version = make_pipeline(project, org_admin, "Billing")
    c, _ = make_pipeline(project, org_admin, "Customers")
    return {"a": run_setup["pipeline"], "b": b, "c": c, "versions": {"a": run_setup["version"], "b": b_version}}


def on_success(actor, pipeline, upstream, environment, **kwargs) -> PipelineTrigger:
    return services.trigger_create(
        actor=actor,
        pipeline=pipeline,
        environment=environment,
        kind=TriggerKind.ON_SUCCESS,
        upstream_pipeline=upstream,
        **kwargs,
    )


# --- on success ---------------------------------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_a_success_starts_each_downstream_run_once_through_chains_and_fan_out(
    chain, stages, org_admin, celery_worker_thread
):
    development = stages["development"]
    a, b, c = chain["a"], chain["b"], chain["c"]
    on_success(org_admin, b, a, development)  # A → B
    on_success(org_admin, c, b, development)  # B → C (a chain)
    on_success(org_admin, c, a, development)  # A → C (fan-out from A)

    upstream = wait_for_run(services.run_create(actor=org_admin, pipeline=a, environment=development).pk)
    assert upstream.status == RunStatus.SUCCEEDED, upstream.error

    (b_run,) = wait_for_runs(b, 1)
    assert b_run.status == RunStatus.SUCCEEDED, b_run.error
    assert b_run.trigger == Trigger.TRIGGER and b_run.upstream_id == upstream.pk
    assert b_run.requested_by == org_admin and b_run.environment == development
    c_runs = wait_for_runs(c, 2)
    assert sorted(r.upstream_id for r in c_runs) == sorted([upstream.pk, b_run.pk])
    assert {r.status for r in c_runs} == {RunStatus.SUCCEEDED}
    assert TriggerFire.objects.filter(upstream=upstream).count() == 2
    assert TriggerFire.objects.filter(fired_at__isnull=True).count() == 0

    # The completion delivered again (a retried finish, the wake-up twice, the beat sweep): nothing new.
    with transaction.atomic():
        services.triggers_fire_on_success(upstream)
    tasks.start_triggered_runs.delay(upstream.pk)
    tasks.start_triggered_runs.delay(upstream.pk)
    tasks.sweep_triggers.delay()
    settle()
    assert len(runs_of(b)) == 1 and len(runs_of(c)) == 2
    assert TriggerFire.objects.filter(upstream=upstream).count() == 2
    # A run that did not succeed starts nothing.
    services.run_cancel(actor=org_admin, run=services.run_create(actor=org_admin, pipeline=a, environment=development))
    settle(1)
    assert len(runs_of(b)) == 1


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_two_workers_and_racing_sweeps_start_the_downstream_run_once(chain, stages, org_admin, celery_worker_thread):
    pg.require_test_database(connection, "Race tests need PostgreSQL: SQLite serialises writers, so nothing would race")
    development = stages["development"]
    trigger = on_success(org_admin, chain["b"], chain["a"], development)
    upstream = wait_for_run(services.run_create(actor=org_admin, pipeline=chain["a"], environment=development).pk)
    (first,) = wait_for_runs(chain["b"], 1)
    # A second success of A whose fire is left pending (as after a broker outage) ...
    with transaction.atomic():
        again = services.run_create(actor=org_admin, pipeline=chain["a"], environment=development)
        services.run_cancel(actor=org_admin, run=again)
        TriggerFire.objects.create(trigger=trigger, upstream=again)
    # ... is started by the worker's two pool threads and four sweeps at once: exactly once.
    for _ in range(4):
        tasks.start_triggered_runs.delay(again.pk)
    barrier = threading.Barrier(4)
    created, errors = [], []

    def sweep():
        try:
            barrier.wait(timeout=30)
            created.extend(services.trigger_fires_start(upstream_pk=again.pk))
        except Exception as exc:  # reported below: an assertion in a thread would be lost
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    runs = wait_for_runs(chain["b"], 2)
    settle()
    runs = runs_of(chain["b"])
    assert len(runs) == 2 and {r.upstream_id for r in runs} == {upstream.pk, again.pk}
    assert runs[0].pk == first.pk
    fire = TriggerFire.objects.get(upstream=again)
    assert fire.run_id == runs[1].pk and fire.fired_at is not None and fire.error == ""


# --- webhooks -----------------------------------------------------------------------------------


@pytest.fixture
def webhook(run_setup, org, org_admin, stages):
    """A webhook trigger of the fixture's pipeline in development, signed with a local secret, and a
    run-time parameter its deliveries may set."""
    secret = secret_services.secret_create(actor=org_admin, organization=org, name="hook_key", value=SIGNING_VALUE)
    variable_services.variable_create(
        actor=org_admin,
        organization=org,
        name="batch_size",
        type="integer",
        default_value=10,
        allow_runtime_override=True,
    )
    trigger = services.trigger_create(
        actor=org_admin,
        pipeline=run_setup["pipeline"],
        environment=stages["development"],
        kind=TriggerKind.WEBHOOK,
        signing_secret=secret,
    )
    return trigger


def deliver(client, trigger, body: bytes, *, key: str = SIGNING_VALUE, timestamp: int | None = None, signature=None):
    timestamp = int(time.time()) if timestamp is None else timestamp
    headers = {
        "HTTP_X_PLANASONIX_TIMESTAMP": str(timestamp),
        "HTTP_X_PLANASONIX_SIGNATURE": signature or signing.sign(key, timestamp, body),
    }
    url = reverse("trigger-hook", kwargs={"token": trigger.token})
    return client.post(url, data=body, content_type="application/json", **headers)


def nothing_written_since(counts: tuple[int, int]) -> bool:
    return (Run.objects.count(), TriggerFire.objects.count()) == counts


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_a_signed_webhook_starts_one_run_and_a_bad_or_replayed_one_writes_nothing(
    webhook, run_setup, api, celery_worker_thread
):
    client = api()
    body = json.dumps({"parameters": {"batch_size": 25}}).encode()
    timestamp = int(time.time())

    accepted = deliver(client, webhook, body, timestamp=timestamp)

    assert accepted.status_code == 202, accepted.content
    run = wait_for_run(accepted.json()["run"])
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.trigger == Trigger.WEBHOOK and run.parameters == {"batch_size": 25} and run.upstream is None
    assert run.requested_by == webhook.owner
    counts = (Run.objects.count(), TriggerFire.objects.count())

    replayed = deliver(client, webhook, body, timestamp=timestamp)
    assert replayed.status_code == 401 and "replay" in replayed.json()["error"]["message"]
    forged = deliver(client, webhook, body, key="not-the-signing-secret")
    assert forged.status_code == 401 and forged.json()["error"]["code"] == "webhook_unauthorized"
    tampered = deliver(
        client, webhook, body.replace(b"25", b"26"), signature=signing.sign(SIGNING_VALUE, timestamp, body)
    )
    assert tampered.status_code == 401
    stale = deliver(client, webhook, body, timestamp=timestamp - signing.REPLAY_WINDOW_SECONDS - 60)
    assert stale.status_code == 401 and "window" in stale.json()["error"]["message"]
    unsigned = client.post(
        reverse("trigger-hook", kwargs={"token": webhook.token}), data=body, content_type="application/json"
    )
    assert unsigned.status_code == 401
    unknown = client.post(
        reverse("trigger-hook", kwargs={"token": "x" * 43}), data=body, content_type="application/json"
    )
    assert unknown.status_code == 401
    settle(1)
    assert nothing_written_since(counts)

    # Parameters are validated as any run's: a bad one is a 400 naming it, and nothing is written.
    wrong_type = deliver(client, webhook, json.dumps({"parameters": {"batch_size": "many"}}).encode())
    assert wrong_type.status_code == 400 and "parameters.batch_size" in wrong_type.json()["error"]["fields"]
    not_overridable = deliver(client, webhook, json.dumps({"parameters": {"source_table": "x"}}).encode())
    assert not_overridable.status_code == 400 and "parameters.source_table" in not_overridable.json()["error"]["fields"]
    unknown_field = deliver(client, webhook, json.dumps({"params": {}}).encode())
    assert unknown_field.status_code == 400 and "params" in unknown_field.json()["error"]["fields"]
    assert nothing_written_since(counts)
    # The response, the run and the history hold no signing secret.
    assert SIGNING_VALUE not in accepted.content.decode()
    assert SIGNING_VALUE not in json.dumps(list(PipelineTrigger.history.values()), default=str)


# --- deployments and rollback -------------------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_deploying_switches_production_triggers_on_and_a_rollback_keeps_them_with_the_running_version(
    chain, stages, org, org_admin, api, celery_worker_thread
):
    production = stages["production"]
    a, b = chain["a"], chain["b"]
    follows_a = on_success(org_admin, b, a, production)
    assert follows_a.enabled is False  # production: off until a deployment switches it on
    with pytest.raises(Exception, match="deployed") as refused:
        on_success(org_admin, chain["c"], a, production, enabled=True)
    assert refused.value.fields == {"enabled": [refused.value.fields["enabled"][0]]}

    first = services.deploy(actor=org_admin, pipeline=b, environment=production, version=chain["versions"]["b"])
    follows_a.refresh_from_db()
    assert follows_a.enabled is True and follows_a.switched_on_by_id == first.pk
    assert follows_a.history.first().history_change_reason == "switched on by deploying v1"

    v2 = pipeline_services.pipeline_version_create(actor=org_admin, pipeline=b, graph=copy_graph("billing_v2"))
    second = services.deploy(actor=org_admin, pipeline=b, environment=production, version=v2)
    secret = secret_services.secret_create(actor=org_admin, organization=org, name="prod_hook", value=SIGNING_VALUE)
    brought_by_v2 = services.trigger_create(
        actor=org_admin, pipeline=b, environment=production, kind=TriggerKind.WEBHOOK, signing_secret=secret
    )
    assert brought_by_v2.enabled is True and brought_by_v2.switched_on_by_id == second.pk

    services.deployment_rollback(actor=org_admin, deployment=second, reason="bad release")

    follows_a.refresh_from_db()
    brought_by_v2.refresh_from_db()
    assert follows_a.enabled is True  # on since v1, which runs again
    assert brought_by_v2.enabled is False and brought_by_v2.switched_on_by is None
    assert deliver(api(), brought_by_v2, b"{}").status_code == 409  # off: nothing started

    # The running version (v1 again) is what A's success starts in production, once.
    services.deploy(actor=org_admin, pipeline=a, environment=production, version=chain["versions"]["a"])
    upstream = wait_for_run(services.run_create(actor=org_admin, pipeline=a, environment=production).pk)
    assert upstream.status == RunStatus.SUCCEEDED, upstream.error
    (b_run,) = wait_for_runs(b, 1)
    assert b_run.status == RunStatus.SUCCEEDED, b_run.error
    assert b_run.version == chain["versions"]["b"] and b_run.upstream_id == upstream.pk


# --- cycles and who may -------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_cycle_is_refused_naming_the_chain(chain, stages, org_admin):
    development = stages["development"]
    a, b, c = chain["a"], chain["b"], chain["c"]
    on_success(org_admin, b, a, development)
    on_success(org_admin, c, b, development)

    with pytest.raises(Exception) as two:
        on_success(org_admin, a, b, development)
    assert "Orders → Billing → Orders" in two.value.message and "upstream_pipeline" in two.value.fields
    with pytest.raises(Exception) as three:
        on_success(org_admin, a, c, development)
    assert "Orders → Billing → Customers → Orders" in three.value.message
    with pytest.raises(Exception) as itself:
        on_success(org_admin, a, a, development)
    assert "Orders → Orders" in itself.value.message
    # The same edges in another environment are another graph.
    on_success(org_admin, a, b, stages["staging"])
    assert PipelineTrigger.objects.filter(environment=development).count() == 2


@pytest.mark.django_db
def test_editing_triggers_follows_the_schedules_rule(chain, stages, members, org_admin):
    developer = members["developer"]
    with pytest.raises(Exception) as refused:
        on_success(developer, chain["b"], chain["a"], stages["production"])
    assert refused.value.status == 403 and not PipelineTrigger.objects.exists()
    assert perms.may(developer, perms.CHANGE_CONFIG, stages["development"])
    trigger = on_success(developer, chain["b"], chain["a"], stages["development"])
    assert trigger.enabled is True and trigger.owner == developer
