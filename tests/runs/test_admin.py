"""The runs admin: runs are read and cancelled, deployments are read-only history, schedules are
saved through services.schedule_save (errors as form errors); staff see only what they may view."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from apps.connections import services as connection_services
from apps.connections.models import ConnectionRole
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.runs import services
from apps.runs.models import Run, RunStatus, Schedule
from apps.secrets import services as secret_services
from tests.variables.adminforms import errors_of, login

RUNS = reverse("admin:runs_run_changelist")
DEPLOYMENTS = reverse("admin:runs_deployment_changelist")
SCHEDULES = reverse("admin:runs_schedule_changelist")
SCHEDULE_ADD = reverse("admin:runs_schedule_add")
CANARY = "CANARY-admin-9d1e-never-shown"


def run_page(run):
    return reverse("admin:runs_run_change", args=[run.pk])


@pytest.fixture
def pipeline(run_setup, org_admin, stages):
    """The runs pipeline, v1 deployed in production (production runs only its deployed version)."""
    services.deploy(
        actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["production"], version=run_setup["version"]
    )
    return run_setup["pipeline"]


@pytest.fixture
def runs(org_admin, pipeline, stages):
    return {
        slug: services.run_create(actor=org_admin, pipeline=pipeline, environment=environment)
        for slug, environment in stages.items()
    }


def test_run_pages_and_filters(org_admin, pipeline, stages, runs):
    client = login(org_admin)
    response = client.get(RUNS)
    assert response.status_code == 200
    assert response.context["cl"].result_count == 3
    staging = stages["staging"]
    for params, expected in [
        ({"status": "queued"}, 3),
        ({"environment": staging.pk}, 1),
        ({"pipeline": pipeline.pk, "trigger": "manual"}, 3),
        ({"environment__kind": "production"}, 1),
    ]:
        response = client.get(RUNS, params)
        assert response.status_code == 200 and response.context["cl"].result_count == expected, params


def test_run_detail_shows_metrics_baseline_and_log(org_admin, pipeline, stages, runs):
    assert services.run_execute(runs["production"].pk).status == RunStatus.SUCCEEDED
    run = services.run_execute(runs["staging"].pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    response = login(org_admin).get(run_page(run))
    assert response.status_code == 200
    page = response.content.decode()
    assert "hash_total" in page and "baseline_run" in page and "orders_src" in page
    assert "&quot;passed&quot;: true" in page


def test_cancel_action_goes_through_the_service(org_admin, runs):
    executed = services.run_execute(runs["development"].pk)
    assert executed.status == RunStatus.SUCCEEDED
    response = login(org_admin).post(
        RUNS,
        {"action": "cancel_runs", ACTION_CHECKBOX_NAME: [runs["staging"].pk, runs["development"].pk]},
        follow=True,
    )
    assert response.status_code == 200
    texts = [str(m) for m in response.context["messages"]]
    assert any("Cancelled 1 run" in t for t in texts) and any("already succeeded" in t for t in texts)
    assert Run.objects.get(pk=runs["staging"].pk).status == RunStatus.CANCELLED
    assert Run.objects.get(pk=runs["production"].pk).status == RunStatus.QUEUED


def test_runs_are_read_only(org_admin, runs):
    client = login(org_admin)
    assert client.get(reverse("admin:runs_run_add")).status_code == 403
    before = Run.objects.get(pk=runs["staging"].pk)
    client.post(run_page(before), {"status": "succeeded"})
    assert Run.objects.get(pk=before.pk).status == RunStatus.QUEUED


def test_staff_see_only_environments_they_may_view(members, runs, stages):
    client = login(members["developer"])
    response = client.get(RUNS)
    assert response.status_code == 200
    assert [r.pk for r in response.context["cl"].result_list] == [runs["development"].pk]
    filter_choices = str(response.content)
    assert "acme/development" in filter_choices and "acme/production" not in filter_choices
    assert client.get(run_page(runs["production"])).status_code in (302, 403)
    client.post(RUNS, {"action": "cancel_runs", ACTION_CHECKBOX_NAME: [runs["production"].pk]})
    assert Run.objects.get(pk=runs["production"].pk).status == RunStatus.QUEUED


def test_outsider_staff_has_no_runs_module(outsider, runs):
    client = login(outsider)
    assert client.get(RUNS).status_code == 403
    assert client.get(run_page(runs["development"])).status_code in (302, 403)


def test_no_secret_value_on_run_pages(org, org_admin, pipeline, stages, run_setup):
    secret = secret_services.secret_create(
        actor=org_admin, organization=org, name="reporting_pw", value=CANARY, allowed_environments=[stages["staging"]]
    )
    connection_services.connection_binding_set(
        actor=org_admin,
        role=ConnectionRole.objects.get(organization=org, name="reporting"),
        environment=stages["staging"],
        params={"path": str(run_setup["paths"]["staging"]["target"])},
        credential=secret,
    )
    run = services.run_create(actor=org_admin, pipeline=pipeline, environment=stages["staging"])
    assert services.run_execute(run.pk).status == RunStatus.SUCCEEDED
    client = login(org_admin)
    for url in (RUNS, run_page(run)):
        page = client.get(url).content.decode()
        assert CANARY not in page
    assert "secret://reporting_pw" in client.get(run_page(run)).content.decode()


# --- deployments ----------------------------------------------------------------------------------------


def test_deployments_are_read_only_history(org_admin, stages, run_setup):
    pipeline = run_setup["pipeline"]  # not the fixture: no production deployment here
    first = services.deploy_direct(
        actor=org_admin, pipeline=pipeline, environment=stages["development"], version=run_setup["version"]
    )
    second = services.deploy_direct(
        actor=org_admin, pipeline=pipeline, environment=stages["development"], version=run_setup["version"]
    )
    client = login(org_admin)
    response = client.get(DEPLOYMENTS, {"is_active__exact": "1"})
    assert response.status_code == 200 and [d.pk for d in response.context["cl"].result_list] == [second.pk]
    assert client.get(reverse("admin:runs_deployment_change", args=[first.pk])).status_code == 200
    assert client.get(reverse("admin:runs_deployment_history", args=[first.pk])).status_code == 200
    assert client.get(reverse("admin:runs_deployment_add")).status_code == 403


# --- schedules ----------------------------------------------------------------------------------------------


def schedule_form(pipeline, environment, **overrides):
    return {"pipeline": pipeline.pk, "environment": environment.pk, "cron": "0 6 * * *", "timezone": "UTC", **overrides}


def test_schedule_add_and_change_through_the_service(members, pipeline, stages):
    developer = members["developer"]
    client = login(developer)
    response = client.post(SCHEDULE_ADD, schedule_form(pipeline, stages["development"]))
    assert response.status_code == 302, errors_of(response)
    schedule = Schedule.objects.get()
    assert schedule.owner == developer and schedule.enabled is False
    assert schedule.history.get().history_user == developer
    change = reverse("admin:runs_schedule_change", args=[schedule.pk])
    response = client.post(change, {"cron": "15 7 * * 1-5", "timezone": "Europe/Paris", "enabled": "on"})
    assert response.status_code == 302, errors_of(response)
    schedule.refresh_from_db()
    assert (schedule.cron, schedule.timezone, schedule.enabled) == ("15 7 * * 1-5", "Europe/Paris", True)
    assert schedule.history.count() == 2


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"cron": "every morning"}, "not a five-field cron expression"),
        ({"timezone": "Mars/Olympus"}, "Unknown time zone"),
    ],
)
def test_schedule_bad_input_is_a_form_error(org_admin, pipeline, stages, overrides, message):
    response = login(org_admin).post(SCHEDULE_ADD, schedule_form(pipeline, stages["development"], **overrides))
    assert message in errors_of(response)
    assert not Schedule.objects.exists()


def test_schedule_in_a_locked_environment_needs_manage_schedules(org_admin, members, pipeline, stages):
    developer = members["developer"]
    for codename in (perms.VIEW, perms.CHANGE_CONFIG):
        env_services.permission_grant(actor=org_admin, environment=stages["staging"], codename=codename, user=developer)
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], locked=True)
    response = login(developer).post(SCHEDULE_ADD, schedule_form(pipeline, stages["staging"]))
    assert "manage_schedules" in errors_of(response)
    assert not Schedule.objects.exists()


def test_schedule_environment_choices_follow_manage_schedules(members, pipeline, stages):
    response = login(members["developer"]).get(SCHEDULE_ADD)
    choices = list(response.context["adminform"].form.fields["environment"].queryset)
    assert choices == [stages["development"]]
    response = login(members["developer"]).post(SCHEDULE_ADD, schedule_form(pipeline, stages["production"]))
    assert "environment" in response.context["adminform"].form.errors
    assert not Schedule.objects.exists()
