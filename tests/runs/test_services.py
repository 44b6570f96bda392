import sqlite3

from apps.environments import services as env_services
from apps.runs import services
from apps.runs.models import RunStatus


def test_run_in_development_writes_and_measures(run_setup, stages, members, django_capture_on_commit_callbacks):
    developer = members["developer"]
    with django_capture_on_commit_callbacks(execute=False):
        run = services.run_create(actor=developer, pipeline=run_setup["pipeline"])
    assert run.environment == stages["development"] and run.status == RunStatus.QUEUED
    run = services.run_execute(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    # development samples 10,000 rows by default: all 100 rows pass
    metrics = run.metrics["orders_out"]
    assert metrics["row_count"] == 100 and metrics["keys_unique"] is True and metrics["distinct_keys"] == 100
    with sqlite3.connect(run_setup["paths"]["development"]["target"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders_mart").fetchone()[0] == 100


def test_policy_rejects_destination_and_writes_nothing(
    run_setup, stages, org_admin, django_capture_on_commit_callbacks
):
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], allowed_destinations=["s3"])
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    assert run.status == RunStatus.REJECTED and "allowed_destinations" in run.error
    assert not run_setup["paths"]["staging"]["target"].exists()


def test_max_rows_caps_rows_read(run_setup, stages, org_admin, django_capture_on_commit_callbacks):
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], max_rows=30)
    with django_capture_on_commit_callbacks(execute=False):
        run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    run = services.run_execute(run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.metrics["orders_out"]["row_count"] == 30
