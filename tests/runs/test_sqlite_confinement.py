"""Regressions for review findings on runs: confinement of SQLite files, secret scrubbing, stuck
cancelled runs, never-firing cron expressions, freeze windows on direct deploys."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection
from django.utils import timezone

from apps.connections import services as connection_services
from apps.connections.models import ConnectionRole
from apps.core.errors import Conflict, ValidationFailed
from apps.environments import services as env_services
from apps.environments.models import validate_cron
from apps.runs import services
from apps.runs.models import Run, RunStatus


def test_sqlite_binding_cannot_reach_the_platform_database(run_setup, stages, members, org_admin):
    if connection.vendor != "sqlite":
        pytest.skip("the platform database is a file only on SQLite (tests/core/test_egress.py covers servers)")
    role = ConnectionRole.objects.get(name="warehouse")
    platform_db = connection.settings_dict["NAME"]
    with pytest.raises(ValidationFailed) as exc:
        connection_services.connection_binding_set(
            actor=org_admin, role=role, environment=stages["development"], params={"path": str(platform_db)}
        )
    assert "params.path" in exc.value.fields
    assert role.bindings.get(environment=stages["development"]).params == {"path": "warehouse.sqlite3"}


def test_sqlite_binding_outside_the_root_is_refused_at_use(run_setup, stages, org_admin, settings, tmp_path):
    settings.SQLITE_CONNECTION_ROOT = str(tmp_path / "only-here")
    with pytest.raises(ValidationFailed):
        services.run_create(actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["staging"])
    assert not Run.objects.exists()


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
