"""`manage.py run_pipeline`: creates the run through the service, waits, prints the outcome and
exits non-zero (CommandError) on bad input, rejection, failure and timeout. The worker path is
tested elsewhere: here `dispatch` executes the run in-process."""

import sqlite3
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from apps.environments import services as env_services
from apps.runs import services
from apps.runs.models import Run, RunStatus


def run_pipeline(*args):
    out = StringIO()
    call_command("run_pipeline", *args, stdout=out)
    return out.getvalue()


@pytest.fixture
def execute_inline(monkeypatch):
    monkeypatch.setattr(services.runs, "dispatch", lambda run_pk: services.run_execute(run_pk))


@pytest.fixture
def never_dispatched(monkeypatch):
    monkeypatch.setattr(services.runs, "dispatch", lambda run_pk: None)


@pytest.mark.django_db(transaction=True)
def test_success_prints_status_and_metrics(run_setup, members, execute_inline):
    out = run_pipeline("sales/orders", "--environment", "development", "--user", "dev", "--timeout", "30")
    run = Run.objects.get()
    assert run.status == RunStatus.SUCCEEDED and run.requested_by == members["developer"]
    assert f"Run {run.pk} succeeded" in out
    assert "orders_out: 100 rows into orders_mart" in out and run.metrics["orders_out"]["hash_total"] in out
    with sqlite3.connect(run_setup["paths"]["development"]["target"]) as conn:
        assert conn.execute("SELECT COUNT(*) FROM orders_mart").fetchone()[0] == 100


@pytest.mark.django_db(transaction=True)
def test_by_id_with_version_and_default_environment(run_setup, org_admin, execute_inline):
    out = run_pipeline(str(run_setup["pipeline"].pk), "--user", "orgadmin", "--version", "1")
    assert "in 'development'" in out and "succeeded" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nope/none", "--user", "dev"], "No pipeline 'nope/none'"),
        (["999999", "--user", "dev"], "No pipeline '999999'"),
        (["orders", "--user", "dev"], "project-slug/pipeline-slug"),
        (["sales/orders", "--user", "ghost"], "No active user 'ghost'"),
        (["sales/orders", "--user", "dev", "--environment", "moon"], "No environment 'moon'"),
        (["sales/orders", "--user", "dev", "--version", "7"], "no version 7"),
        (["sales/orders", "--user", "dev", "--param", "novalue"], "name=value"),
        (["sales/orders", "--user", "dev", "--timeout", "0"], "--timeout"),
        (["sales/orders", "--user", "dev", "--environment", "production"], "run_in_environment"),
    ],
)
def test_bad_input_exits_non_zero_with_a_message(run_setup, members, never_dispatched, args, message):
    with pytest.raises(CommandError, match=message):
        run_pipeline(*args)
    assert not Run.objects.exists()


def test_outsider_cannot_see_the_pipeline(run_setup, outsider, never_dispatched):
    with pytest.raises(CommandError, match="No pipeline"):
        run_pipeline("sales/orders", "--user", "outsider")


def test_rejected_run_exits_non_zero_with_the_reason(run_setup, org_admin, stages, never_dispatched):
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], allowed_destinations=["s3"])
    with pytest.raises(CommandError, match=r"rejected: Rejected by the runtime policy.*allowed_destinations"):
        run_pipeline("sales/orders", "--environment", "staging", "--user", "orgadmin")
    assert Run.objects.get().status == RunStatus.REJECTED


def test_not_ready_configuration_names_the_path(run_setup, org, org_admin, never_dispatched):
    from apps.variables import services as variable_services

    variable_services.variable_create(
        actor=org_admin, organization=org, name="target_region", type="string", required_in=["staging"]
    )
    with pytest.raises(CommandError, match="target_region"):
        run_pipeline("sales/orders", "--environment", "staging", "--user", "orgadmin")


@pytest.mark.django_db(transaction=True)
def test_failed_run_exits_non_zero(run_setup, org_admin, stages, execute_inline):
    run_setup["paths"]["staging"]["source"].unlink()
    sqlite3.connect(run_setup["paths"]["staging"]["source"]).close()  # an empty database: no orders table
    with pytest.raises(CommandError, match="failed"):
        run_pipeline("sales/orders", "--environment", "staging", "--user", "orgadmin")
    assert Run.objects.get().status == RunStatus.FAILED


def test_timeout_exits_non_zero_and_leaves_the_run(run_setup, members, never_dispatched):
    with pytest.raises(CommandError, match=r"still queued after 0\.2 s"):
        run_pipeline("sales/orders", "--user", "dev", "--timeout", "0.2")
    assert Run.objects.get().status == RunStatus.QUEUED
