"""run_actions (cancel, rerun): what the run detail's `actions` says is what the services do, the
admin asks it first, and the status changes only through Run's declared transitions."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from apps.runs import services
from apps.runs.models import Run, RunStatus

pytestmark = pytest.mark.django_db

RUNS = "/api/v1/runs/"


def finished_run(run_setup, members, **fields):
    run = services.run_create(
        actor=members["developer"],
        pipeline=run_setup["pipeline"],
        environment=run_setup["project"].default_environment,
        **fields,
    )
    services.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


def test_rerun_starts_a_run_like_the_finished_one(api, members, run_setup):
    run = finished_run(run_setup, members, sample=True)
    client = api(members["developer"])
    actions = client.get(f"{RUNS}{run.pk}/").json()["actions"]
    assert actions == {
        "cancel": {"allowed": False, "reasons": ["the run is already succeeded"]},
        "rerun": {"allowed": True, "reasons": []},
    }
    response = client.post(f"{RUNS}{run.pk}/rerun/")
    assert response.status_code == 201, response.content
    again = Run.objects.get(pk=response.json()["id"])
    assert (again.version_id, again.environment_id, again.parameters, again.sample, again.status) == (
        run.version_id,
        run.environment_id,
        {},
        True,
        RunStatus.QUEUED,
    )
    assert response.json()["actions"]["cancel"] == {"allowed": True, "reasons": []}
    assert response.json()["actions"]["rerun"]["allowed"] is False
    refused = client.post(f"{RUNS}{again.pk}/rerun/")
    assert refused.status_code == 409 and "once it has finished" in refused.json()["error"]["message"]
    cancel = client.post(f"{RUNS}{run.pk}/cancel/")
    assert cancel.status_code == 409 and "already succeeded" in cancel.json()["error"]["message"]
    assert Run.objects.count() == 2


def test_the_status_changes_only_through_transitions(members, run_setup):
    run = finished_run(run_setup, members)
    with pytest.raises(AttributeError):
        run.status = RunStatus.QUEUED
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED


def test_admin_rerun_action_asks_run_actions_first(client, org_admin, members, run_setup):
    done = finished_run(run_setup, members)
    queued = services.run_create(actor=members["developer"], pipeline=run_setup["pipeline"])
    client.force_login(org_admin)
    response = client.post(
        reverse("admin:runs_run_changelist"),
        {"action": "rerun_runs", ACTION_CHECKBOX_NAME: [done.pk, queued.pk]},
        follow=True,
    )
    texts = [str(m) for m in response.context["messages"]]
    assert any("Started again: 1 run" in t for t in texts), texts
    assert any(f"Run {queued.pk}: cannot rerun it: the run is queued." in t for t in texts), texts
    assert Run.objects.count() == 3
