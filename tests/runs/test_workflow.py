"""Runs end to end with a real Celery worker on the configured broker: writing and measuring a
destination, policy rejections, max_rows, events, hash totals across SQLite and PostgreSQL,
production baselines, and a dead worker's run re-dispatched by the sweep. Plus the worker-side
guards (policy re-checked at execution, a lost lease, cancelling between batches) called directly."""

import decimal
import sqlite3
import time
from datetime import timedelta

import psycopg
import pytest
from celery.signals import task_postrun
from django.db import transaction
from django.utils import timezone

from apps.connections import services as connection_services
from apps.environments import services as env_services
from apps.notifications import services as notification_services
from apps.notifications.models import Delivery
from apps.pipelines import services as pipeline_services
from apps.runs import executor, services
from apps.runs.models import TERMINAL, Run, RunStatus
from tests import postgres as pg
from tests.egress_support import sqlite_file


def wait_for_run(pk: int, timeout: float = 90) -> Run:
    """Poll until the run is terminal (bounded); fail with its state otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        run = Run.objects.select_related("environment").get(pk=pk)
        if run.status in TERMINAL:
            return run
        if time.monotonic() > deadline:
            pytest.fail(f"run {pk} is still {run.status} (attempts {run.attempts}) after {timeout}s")
        time.sleep(0.2)


def rows_in(path, table="orders_mart") -> list:
    with sqlite3.connect(path) as conn:
        return conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()  # noqa: S608


def has_table(path, table="orders_mart") -> bool:
    if not path.exists():
        return False
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", [table]).fetchone() is not None


def source_hash(path, query="SELECT order_id, customer_id, amount FROM orders", key=("order_id",)) -> dict:
    """The metrics the source rows should produce, computed independently of a run."""
    metrics = executor.DestinationMetrics(table="expected", key=list(key))
    with sqlite3.connect(path) as conn:
        cursor = conn.execute(query)
        columns = [d[0] for d in cursor.description]
        for row in cursor:
            metrics.add(columns, row)
    return metrics.as_dict()


def deliveries(event: str, run: Run) -> list[Delivery]:
    return [d for d in Delivery.objects.filter(event=event) if d.payload.get("run", {}).get("id") == run.pk]


@pytest.fixture
def channel(org, org_admin, stages):
    """An email channel that every stage's policy names (email: nothing leaves the machine)."""
    channel, _ = notification_services.channel_create(
        actor=org_admin, organization=org, name="ops", kind="email", target="ops@example.com"
    )
    for environment in stages.values():
        env_services.runtime_policy_update(actor=org_admin, environment=environment, notification_channels=[channel])
    return channel


# --- end to end with a real worker --------------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_run_in_development_writes_the_table_and_records_metrics(
    run_setup, stages, members, channel, celery_worker_thread
):
    paths = run_setup["paths"]["development"]
    run = services.run_create(actor=members["developer"], pipeline=run_setup["pipeline"])
    assert run.environment == stages["development"] and run.status == RunStatus.QUEUED

    run = wait_for_run(run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempts == 1 and run.started_at and run.finished_at and run.lease_expires_at is None
    expected = source_hash(paths["source"])
    metrics = run.metrics["orders_out"]
    assert metrics["table"] == "orders_mart" and metrics["row_count"] == 100
    assert metrics["distinct_keys"] == 100 and metrics["keys_unique"] is True and metrics["duplicate_key_count"] == 0
    assert metrics["hash_total"] == expected["hash_total"]
    stored = rows_in(paths["target"])
    assert len(stored) == 100 and stored[0] == (1, 1, 1.25)
    assert run.resolved["graph"]["nodes"][1]["table"] == "orders_mart"
    (succeeded,) = deliveries("run.succeeded", run)
    assert succeeded.channel == channel and succeeded.payload["environment"]["slug"] == "development"
    assert deliveries("run.failed", run) == []


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_a_failing_run_is_failed_and_emits_run_failed(run_setup, members, channel, celery_worker_thread):
    with sqlite3.connect(run_setup["paths"]["development"]["source"]) as conn:
        conn.execute("DROP TABLE orders")

    run = wait_for_run(services.run_create(actor=members["developer"], pipeline=run_setup["pipeline"]).pk)

    assert run.status == RunStatus.FAILED and "no such table" in run.error
    assert not has_table(run_setup["paths"]["development"]["target"])
    assert len(deliveries("run.failed", run)) == 1 and deliveries("run.succeeded", run) == []


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_a_destination_the_policy_forbids_is_rejected_and_nothing_is_written(
    run_setup, stages, org_admin, channel, celery_worker_thread
):
    staging = stages["staging"]
    env_services.runtime_policy_update(actor=org_admin, environment=staging, allowed_destinations=["s3", "warehouse"])

    run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=staging)

    assert run.status == RunStatus.REJECTED
    assert "'reporting'" in run.error and "allowed_destinations" in run.error
    (violation,) = deliveries("policy.violated", run)
    assert violation.channel == channel and violation.payload["reason"] == run.error
    # The sweep never picks a rejected run up, and a run allowed afterwards proves the worker is live.
    services.runs_sweep(now=timezone.now() + timedelta(hours=1))
    env_services.runtime_policy_update(actor=org_admin, environment=staging, allowed_destinations=["sqlite"])
    allowed = wait_for_run(services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=staging).pk)
    assert allowed.status == RunStatus.SUCCEEDED, allowed.error
    run.refresh_from_db()
    assert run.status == RunStatus.REJECTED and run.attempts == 0 and run.started_at is None and run.metrics == {}


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_max_rows_is_honoured(run_setup, stages, org_admin, celery_worker_thread):
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], max_rows=30)

    run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    run = wait_for_run(run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.metrics["orders_out"]["row_count"] == 30
    assert [r[0] for r in rows_in(run_setup["paths"]["staging"]["target"])] == list(range(1, 31))


# --- baselines --------------------------------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_a_staging_run_is_compared_with_the_production_baseline(run_setup, stages, org_admin, celery_worker_thread):
    pipeline = run_setup["pipeline"]
    services.deploy(actor=org_admin, pipeline=pipeline, environment=stages["production"], version=run_setup["version"])
    production = wait_for_run(
        services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["production"]).pk
    )
    assert production.status == RunStatus.SUCCEEDED, production.error
    assert production.baseline is None  # production is the baseline, not compared

    staging = wait_for_run(services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["staging"]).pk)

    assert staging.status == RunStatus.SUCCEEDED, staging.error
    comparison = staging.baseline
    assert comparison["baseline_run"] == production.pk and comparison["baseline_environment"] == "production"
    assert comparison["passed"] is True
    assert comparison["destinations"]["orders_out"] == {
        "row_count": 100,
        "baseline_row_count": 100,
        "row_delta": 0,
        "row_delta_percent": 0.0,
        "within_tolerance": True,
        "keys_unique": True,
        "hash_equal": True,
        "passed": True,
    }

    # A fifth of the staging source goes missing: the next validation run fails the comparison.
    with sqlite3.connect(run_setup["paths"]["staging"]["source"]) as conn:
        conn.execute("DELETE FROM orders WHERE order_id > 80")
    short = wait_for_run(services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["staging"]).pk)

    assert short.status == RunStatus.SUCCEEDED, short.error
    assert short.baseline["baseline_run"] == production.pk and short.baseline["passed"] is False
    result = short.baseline["destinations"]["orders_out"]
    assert result["row_count"] == 80 and result["row_delta"] == -20 and result["row_delta_percent"] == -20.0
    assert result["within_tolerance"] is False and result["hash_equal"] is False and result["passed"] is False


def test_rows_within_tolerance_pass_and_duplicate_keys_fail(run_setup, stages, org_admin):
    """compare_with_baseline on stored metrics: 4% fewer rows passes a 5% tolerance; duplicate keys fail."""
    pipeline, version = run_setup["pipeline"], run_setup["version"]

    def metrics(rows, unique=True, hash_total="00000000000000aa"):
        return {"orders_out": {"row_count": rows, "keys_unique": unique, "hash_total": hash_total}}

    common = {"pipeline": pipeline, "version": version, "requested_by": org_admin, "finished_at": timezone.now()}
    Run.objects.create(environment=stages["production"], status=RunStatus.SUCCEEDED, metrics=metrics(100), **common)
    close = Run.objects.create(environment=stages["staging"], metrics=metrics(96, hash_total="bb"), **common)
    duplicated = Run.objects.create(environment=stages["staging"], metrics=metrics(100, unique=False), **common)

    assert services.compare_with_baseline(close, tolerance_percent=5)["passed"] is True
    assert services.compare_with_baseline(close, tolerance_percent=5, require_hash=True)["passed"] is False
    assert services.compare_with_baseline(close, tolerance_percent=3)["passed"] is False
    assert services.compare_with_baseline(duplicated, tolerance_percent=5)["passed"] is False


# --- the same rows give the same hash total on SQLite and PostgreSQL ------------------------------

MIXED_ROWS = [
    # id, qty, price, label, note, day, created (UTC), active
    (1, 3, 1.25, "alpha", None, "2024-01-02", "2024-01-02T03:04:05+00:00", 1),
    (2, 0, 3.10, "beta", "x", "2024-02-29", "2024-06-30T22:00:00+00:00", 0),
    (3, -7, 2.0, "gamma é", None, None, None, 1),
    (4, 12345678901, 0.1, "", "y", "1999-12-31", "2024-01-01T00:00:00+00:00", None),
    (5, None, None, "δ", "", "2030-07-14", "2023-03-26T01:30:00+00:00", 0),
]
MIXED_COLUMNS = "id, qty, price, label, note, day, created, active"


@pytest.fixture
def pg_data(allow_loopback):
    """A scratch PostgreSQL database whose sessions run in Europe/Paris (dropped afterwards); the
    local server is reached through the operator's allow-list."""
    with pg.scratch_database("planasonix_r2_data", timezone="Europe/Paris") as params:
        yield params


def _connect_pg(params: dict):
    return psycopg.connect(
        host=params["host"],
        port=params["port"],
        dbname=params["database"],
        user=params["user"],
        password=params.get("password"),
        autocommit=True,
    )


def _readback_hash(kind: str, location, table: str) -> dict:
    metrics = executor.DestinationMetrics(table=table, key=["id"])
    conn = sqlite3.connect(location) if kind == "sqlite" else _connect_pg(location)
    try:
        cursor = conn.cursor()
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608
        columns = [d[0] for d in cursor.description]
        for row in cursor.fetchall():
            metrics.add(columns, row)
    finally:
        conn.close()
    return metrics.as_dict()


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_the_same_rows_give_the_same_hash_total_on_sqlite_and_postgresql(
    run_setup, org, org_admin, stages, members, pg_data, celery_worker_thread
):
    development = stages["development"]
    lite_source = sqlite_file(stages["development"], "mixed.sqlite3")
    lite_target = sqlite_file(stages["development"], "mixed_out.sqlite3")
    with sqlite3.connect(lite_source) as conn:
        conn.execute(
            "CREATE TABLE mixed (id INTEGER, qty INTEGER, price REAL, label TEXT, note TEXT, day TEXT, "
            "created TEXT, active INTEGER)"
        )
        conn.executemany("INSERT INTO mixed VALUES (?, ?, ?, ?, ?, ?, ?, ?)", MIXED_ROWS)
    with _connect_pg(pg_data) as conn:
        conn.execute(
            "CREATE TABLE mixed (id BIGINT, qty BIGINT, price NUMERIC(12, 2), label TEXT, note TEXT, "
            "day DATE, created TIMESTAMPTZ, active BOOLEAN)"
        )
        with conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO mixed VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                [(*r[:7], None if r[7] is None else bool(r[7])) for r in MIXED_ROWS],
            )
        # PostgreSQL hands the values back as Decimal('3.10'), date, Paris-time datetime and bool.
        assert conn.execute("SELECT price, created::text FROM mixed WHERE id = 2").fetchone() == (
            decimal.Decimal("3.10"),
            "2024-07-01 00:00:00+02",
        )
    roles = {}
    for name, kind, params in [
        ("lite_src", "sqlite", {"path": str(lite_source)}),
        ("lite_dst", "sqlite", {"path": str(lite_target)}),
        ("pg_src", "postgres", pg_data),
        ("pg_dst", "postgres", pg_data),
    ]:
        roles[name] = connection_services.connection_role_create(
            actor=org_admin, organization=org, name=name, kind=kind
        )
        connection_services.connection_binding_set(
            actor=org_admin, role=roles[name], environment=development, params=params
        )

    def pipeline(name, source, target, order="id"):
        graph = {
            "nodes": [
                {
                    "id": "src",
                    "type": "source",
                    "connection": source,
                    "query": f"SELECT {MIXED_COLUMNS} FROM mixed ORDER BY {order}",  # noqa: S608
                },
                {
                    "id": "out",
                    "type": "destination",
                    "connection": target,
                    "table": name,
                    "mode": "replace",
                    "key": ["id"],
                },
            ],
            "edges": [["src", "out"]],
        }
        created = pipeline_services.pipeline_create(actor=org_admin, project=run_setup["project"], name=name)
        pipeline_services.pipeline_version_create(actor=org_admin, pipeline=created, graph=graph)
        return created

    pipelines = {
        "lite_to_lite": pipeline("lite_to_lite", "lite_src", "lite_dst"),
        "pg_to_pg": pipeline("pg_to_pg", "pg_src", "pg_dst", order="id DESC"),
        "lite_to_pg": pipeline("lite_to_pg", "lite_src", "pg_dst", order="label"),
        "pg_to_lite": pipeline("pg_to_lite", "pg_src", "lite_dst"),
    }
    runs = {
        name: services.run_create(actor=org_admin, pipeline=p, environment=development).pk
        for name, p in pipelines.items()
    }
    metrics = {}
    for name, pk in runs.items():
        run = wait_for_run(pk)
        assert run.status == RunStatus.SUCCEEDED, f"{name}: {run.error}"
        metrics[name] = run.metrics["out"]

    reference = metrics["lite_to_lite"]
    assert reference["row_count"] == 5 and reference["distinct_keys"] == 5
    for name, result in metrics.items():
        assert result["row_count"] == reference["row_count"], name
        assert result["distinct_keys"] == reference["distinct_keys"], name
        assert result["hash_total"] == reference["hash_total"], name
        # ...and what each destination stored reads back with that same hash total.
        kind = "postgres" if name.endswith("_pg") else "sqlite"
        assert (
            _readback_hash(kind, lite_target if kind == "sqlite" else pg_data, name)["hash_total"]
            == reference["hash_total"]
        ), name

    # One changed value changes the hash total.
    with _connect_pg(pg_data) as conn:
        conn.execute("UPDATE mixed SET price = 3.11 WHERE id = 2")
    changed = wait_for_run(
        services.run_create(actor=org_admin, pipeline=pipelines["pg_to_pg"], environment=development).pk
    )
    assert changed.status == RunStatus.SUCCEEDED, changed.error
    assert changed.metrics["out"]["row_count"] == 5
    assert changed.metrics["out"]["hash_total"] != reference["hash_total"]


# --- a dead worker ----------------------------------------------------------------------------


@pytest.mark.workflow
@pytest.mark.django_db(transaction=True)
def test_a_run_whose_worker_died_is_redispatched_by_the_sweep_and_completes_once(
    run_setup, stages, org_admin, celery_worker_thread
):
    staging = stages["staging"]
    target = run_setup["paths"]["staging"]["target"]
    executed = []

    def record(sender=None, args=None, **kwargs):
        if sender is not None and sender.name == "apps.runs.tasks.execute_run":
            executed.append(args[0])

    task_postrun.connect(record, weak=False)
    try:
        # A worker claims the run (the on-commit dispatch then finds it taken) and dies after its
        # write committed but before it recorded the outcome.
        with transaction.atomic():
            run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=staging)
            claimed = services._claim(run.pk, "worker that dies")
        assert claimed.status == RunStatus.RUNNING and claimed.attempts == 1
        # Let the first delivery reach the live worker (and find the run taken) before the "death".
        deadline = time.monotonic() + 60
        while run.pk not in executed:
            assert time.monotonic() < deadline, "the first dispatch never reached the worker"
            time.sleep(0.1)
    finally:
        task_postrun.disconnect(record)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING and run.attempts == 1 and run.claimed_by == "worker that dies"
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE orders_mart (order_id INTEGER, customer_id INTEGER, amount REAL)")
        conn.executemany(
            "INSERT INTO orders_mart VALUES (?, ?, ?)", [(i, i % 7, round(i * 1.25, 2)) for i in range(1, 101)]
        )
    # The sweep leaves a live lease alone...
    assert services.runs_sweep()["requeued"] == 0
    # ...and requeues the run once the lease has run out.
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))

    assert services.runs_sweep()["requeued"] == 1
    run = wait_for_run(run.pk)

    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.attempts == 2 and run.claimed_by == "builtin"
    assert run.metrics["orders_out"]["row_count"] == 100
    stored = rows_in(target)
    assert len(stored) == 100 and len(set(stored)) == 100  # replace mode: the rows once, not twice
    assert services.runs_sweep() == {"requeued": 0, "redispatched": 0}


def test_the_sweep_gives_up_after_the_maximum_attempts(run_setup, stages, org_admin, settings, monkeypatch):
    monkeypatch.setattr(services.runs, "dispatch", lambda pk: None)
    settings.RUN_MAX_ATTEMPTS = 2
    run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    for _ in range(2):
        services._claim(run.pk, "dies")
        Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        services.runs_sweep()
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED and run.attempts == 2 and "too many" in run.error


# --- worker-side guards, called directly ------------------------------------------------------


def test_a_policy_tightened_after_queueing_rejects_the_run_in_the_worker(
    run_setup, stages, org_admin, channel, no_dispatch, django_capture_on_commit_callbacks
):
    staging = stages["staging"]
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=staging)
    assert run.status == RunStatus.QUEUED and no_dispatch == [run.pk]
    env_services.runtime_policy_update(actor=org_admin, environment=staging, allowed_destinations=["s3"])

    run = services.run_execute(run.pk)

    assert run.status == RunStatus.REJECTED and "allowed_destinations" in run.error
    assert not has_table(run_setup["paths"]["staging"]["target"])
    assert len(deliveries("policy.violated", run)) == 1 and deliveries("run.succeeded", run) == []


def test_a_worker_that_lost_its_lease_stops_without_recording(run_setup, stages, org_admin, no_dispatch, monkeypatch):
    """A slow (not dead) worker whose run was requeued and claimed again must not finish it too."""
    run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    real_execute_graph = executor.execute_graph

    def taken_over_midway(resolved, limits, check, log, **kwargs):
        Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        assert services.runs_sweep()["requeued"] == 1
        assert services._claim(run.pk, "second worker").attempts == 2
        return real_execute_graph(resolved, limits, check, log, **kwargs)  # check() runs before each batch

    monkeypatch.setattr(executor, "execute_graph", taken_over_midway)

    result = services.run_execute(run.pk, claimer="first worker")

    assert result.status == RunStatus.RUNNING and result.attempts == 2 and result.claimed_by == "second worker"
    assert result.finished_at is None and result.metrics == {}
    assert not has_table(run_setup["paths"]["staging"]["target"])  # the first worker's write rolled back


def test_cancel_stops_a_running_run_between_batches_and_writes_nothing(
    run_setup, stages, org_admin, no_dispatch, monkeypatch
):
    run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    real_limits, real_read_source = services._limits, executor.read_source
    monkeypatch.setattr(
        services.execution, "_limits", lambda r, p: executor.Limits(**{**vars(real_limits(r, p)), "batch_size": 10})
    )
    batches_read = []

    def cancel_after_first_batch(conn, query, limits, check):
        for item in real_read_source(conn, query, limits, check):
            batches_read.append(len(item[1]))
            yield item
            if len(batches_read) == 1:
                services.run_cancel(actor=org_admin, run=run)

    monkeypatch.setattr(executor, "read_source", cancel_after_first_batch)

    result = services.run_execute(run.pk)

    assert result.status == RunStatus.CANCELLED and result.error == "Cancelled."
    assert batches_read == [10]
    assert not has_table(run_setup["paths"]["staging"]["target"])
