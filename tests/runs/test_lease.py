"""A single statement longer than the run lease: the worker keeps its lease while the statement
runs (a heartbeat), so the sweep does not hand the run to a second worker; and a worker whose run
was taken over during its last statement rolls back instead of committing a second copy."""

import sqlite3
import time

import pytest

from apps.pipelines import services as pipeline_services
from apps.runs import executor, services
from apps.runs.models import Run, RunStatus
from tests.runs.conftest import GRAPH

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def stall(monkeypatch):
    """`pnx_stall()` in SQL on every SQLite connection the executor opens: runs the test's callback
    in the middle of a statement (a statement as slow as the callback makes it)."""
    callbacks = []
    real_connect = executor.connect

    def call() -> int:
        for callback in callbacks:
            callback()
        return 1

    def connect(kind, params, password, *, environment, read_only=False):
        conn = real_connect(kind, params, password, environment=environment, read_only=read_only)
        if kind == "sqlite":
            conn.create_function("pnx_stall", 0, call)
        return conn

    monkeypatch.setattr(executor, "connect", connect)
    return callbacks


def version_with(run_setup, org_admin, *, query=None, mode="replace"):
    source, destination = GRAPH["nodes"]
    graph = {
        **GRAPH,
        "nodes": [{**source, "query": query or source["query"]}, {**destination, "mode": mode}],
    }
    return pipeline_services.pipeline_version_create(actor=org_admin, pipeline=run_setup["pipeline"], graph=graph)


def rows_in(path) -> int:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT count(*) FROM orders_mart").fetchone()[0]


def test_a_statement_longer_than_the_lease_keeps_the_run_with_its_worker(
    run_setup, stages, org_admin, settings, stall, no_dispatch
):
    settings.RUN_LEASE_SECONDS = 1
    development = stages["development"]
    # The scalar subquery runs once, inside the one statement that sorts the rows.
    version = version_with(
        run_setup,
        org_admin,
        query="SELECT order_id, customer_id, amount FROM orders WHERE (SELECT pnx_stall()) ORDER BY order_id",
    )
    run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=development, version=version)
    sweeps = []

    def sweep_after_the_lease_would_have_run_out():
        time.sleep(2.5)  # 2.5 leases inside one statement
        sweeps.append(services.runs_sweep())

    stall.append(sweep_after_the_lease_would_have_run_out)

    result = services.run_execute(run.pk, claimer="slow worker")

    assert sweeps == [{"requeued": 0, "redispatched": 0}]
    assert result.status == RunStatus.SUCCEEDED, result.error
    assert result.attempts == 1 and result.claimed_by == "slow worker"
    assert no_dispatch == [run.pk]  # dispatched once, when it was created; never again
    assert rows_in(run_setup["paths"]["development"]["target"]) == 100


def test_a_run_taken_over_during_its_last_statement_is_not_written_twice(
    run_setup, stages, org_admin, stall, no_dispatch
):
    development = stages["development"]
    target = run_setup["paths"]["development"]["target"]
    with sqlite3.connect(target) as conn:
        conn.execute("CREATE TABLE orders_mart (order_id INTEGER, customer_id INTEGER, amount REAL)")
        # The last row's insert stalls: the statement after the executor's last check between batches.
        conn.execute(
            "CREATE TRIGGER stall AFTER INSERT ON orders_mart WHEN NEW.order_id = 100 BEGIN SELECT pnx_stall(); END"
        )
    version = version_with(run_setup, org_admin, mode="append")
    run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=development, version=version)
    taken_over = []

    def another_worker_takes_the_run():
        # The worker was paused past its lease (no heartbeat either): the sweep requeues the run
        # and a second worker claims it.
        Run.objects.filter(pk=run.pk).update(lease_expires_at=run.created_at)
        taken_over.append(services.runs_sweep()["requeued"])
        taken_over.append(services._claim(run.pk, "second worker").attempts)

    stall.append(another_worker_takes_the_run)

    result = services.run_execute(run.pk, claimer="first worker")

    assert taken_over == [1, 2]
    assert result.status == RunStatus.RUNNING and result.claimed_by == "second worker"
    assert result.finished_at is None and result.metrics == {}
    assert rows_in(target) == 0  # the first worker rolled its append back


def test_the_heartbeat_stops_with_the_run(run_setup, stages, org_admin, settings, no_dispatch):
    import threading

    settings.RUN_LEASE_SECONDS = 1
    run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["development"])
    result = services.run_execute(run.pk)
    assert result.status == RunStatus.SUCCEEDED and result.lease_expires_at is None
    assert not [t for t in threading.enumerate() if t.name == f"run-{run.pk}-lease"]
    time.sleep(0.5)  # a late beat would have renewed a finished run's lease
    assert Run.objects.get(pk=run.pk).lease_expires_at is None
