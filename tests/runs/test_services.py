"""The runs services: a run queued and executed (writes, measures, obeys the runtime policy), a
cancelled run whose worker died, the schedules' cron check and direct deploys inside a freeze window."""

import sqlite3
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from apps.core.errors import Conflict
from apps.environments import services as env_services
from apps.environments.models import validate_cron
from apps.runs import services
from apps.runs.models import Run, RunStatus


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


def test_cancelled_run_whose_worker_died_ends_cancelled(
    run_setup, stages, org_admin, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=False):
        run = services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    services._claim(run.pk, "dead-worker")
    services.run_cancel(actor=org_admin, run=run)
    Run.objects.filter(pk=run.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=False):
        services.runs_sweep()
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.finished_at is not None


def test_cron_that_never_fires_is_refused():
    with pytest.raises(ValidationError):
        validate_cron("0 0 30 2 *")
    validate_cron("0 6 * * 1-5")


def test_direct_deploy_refused_inside_a_freeze_window(run_setup, stages, org_admin):
    now = timezone.now()
    env_services.freeze_window_create(
        actor=org_admin,
        environment=stages["development"],
        kind="one_off",
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        reason="quarter close",
    )
    with pytest.raises(Conflict, match="freeze"):
        services.deploy_direct(
            actor=org_admin,
            pipeline=run_setup["pipeline"],
            environment=stages["development"],
            version=run_setup["version"],
        )
    assert settings.SQLITE_CONNECTION_ROOT


def test_a_sample_is_refused_where_the_policy_refuses_run_time_overrides(run_setup, stages, org_admin):
    from apps.core.errors import ValidationFailed

    services.deploy(
        actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["production"], version=run_setup["version"]
    )
    assert not services.sample_answer(stages["production"]).allowed
    with pytest.raises(ValidationFailed) as raised:
        services.run_create(
            actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["production"], sample=True
        )
    assert "sample" in raised.value.fields and not Run.objects.exists()
