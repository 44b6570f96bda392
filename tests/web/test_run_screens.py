"""The run, schedule and preview dialogs on the pipeline page and the run page: each calls the runs
service the API calls, shows its refusals on the form with their 4xx status, writes nothing when it
refuses, and costs a bounded number of queries."""

import pytest
from django.urls import reverse

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.runs import services as run_services
from apps.runs.models import Run, RunStatus, Schedule, Trigger
from apps.secrets import services as secret_services
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition, Role
from apps.variables import services as variable_services

pytestmark = pytest.mark.django_db

RUN_PAGE_MAX_QUERIES = 9  # measured 7 (8 with a baseline run to compare with), whatever the metrics and config


@pytest.fixture
def batch_size(web):
    """An integer variable that runs may override (where the stage's policy allows)."""
    return variable_services.variable_create(
        actor=web["org_admin"],
        organization=web["org"],
        project=web["project"],
        name="batch_size",
        type="integer",
        default_value=500,
        allow_runtime_override=True,
    )


def pipeline_url(w, name="web:pipeline-detail"):
    return reverse(name, args=[w["pipeline"].pk])


def run_form(client, w, **data):
    """POST the run dialog with the key its GET handed out."""
    form = client.get(pipeline_url(w)).context["run_form"]
    body = {"idempotency_key": form.initial["idempotency_key"], "version": "", **data}
    return client.post(pipeline_url(w, "web:pipeline-run"), body)


def executed(run) -> Run:
    run_services.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


# --- run dialog ---------------------------------------------------------------------------------------------


def test_run_dialog_offers_the_stages_the_user_may_run_in_and_typed_parameters(client_for, web, batch_size):
    response = client_for(web["developer"]).get(pipeline_url(web))
    form = response.context["run_form"]
    assert list(form.fields["environment"].queryset) == [web["development"]]
    assert form.fields["environment"].initial == web["development"].pk  # the project's default
    assert form.fields["param_batch_size"].__class__.__name__ == "IntegerField"
    assert "param_source_table" not in form.fields  # no run-time override allowed for it
    html = response.content.decode()
    assert 'id="run-dialog"' in html and 'type="number" name="param_batch_size"' in html
    assert '<script src="/static/web/dialogs.js" defer>' in html


def test_run_dialog_starts_a_run_with_a_parameter_and_goes_to_its_page(client_for, web, batch_size, no_dispatch):
    client = client_for(web["developer"])
    response = run_form(client, web, environment=web["development"].pk, param_batch_size="42", sample="on")
    run = Run.objects.get()
    assert response.status_code == 302 and response["Location"] == reverse("web:run-detail", args=[run.pk])
    assert run.parameters == {"batch_size": 42} and run.sample and run.trigger == Trigger.MANUAL
    assert run.requested_by == web["developer"] and run.environment == web["development"]


def test_a_double_submit_starts_one_run_and_a_reused_key_with_another_body_is_409(
    client_for, web, batch_size, no_dispatch
):
    client = client_for(web["developer"])
    key = client.get(pipeline_url(web)).context["run_form"].initial["idempotency_key"]
    body = {"idempotency_key": key, "environment": web["development"].pk, "param_batch_size": "1"}
    first = client.post(pipeline_url(web, "web:pipeline-run"), body)
    again = client.post(pipeline_url(web, "web:pipeline-run"), body)
    assert first["Location"] == again["Location"] and Run.objects.count() == 1
    changed = client.post(pipeline_url(web, "web:pipeline-run"), {**body, "param_batch_size": "2"})
    assert changed.status_code == 409 and Run.objects.count() == 1
    assert changed.context["run_form"].non_field_errors() and changed.context["open_dialog"] == "run"


def test_a_parameter_the_stage_policy_refuses_is_a_400_on_its_input(client_for, web, batch_size, no_dispatch):
    run_services.deploy(
        actor=web["org_admin"], pipeline=web["pipeline"], environment=web["production"], version=web["version"]
    )
    response = run_form(client_for(web["org_admin"]), web, environment=web["production"].pk, param_batch_size="7")
    assert response.status_code == 400 and not Run.objects.exists()
    errors = response.context["run_form"].errors["param_batch_size"]
    assert errors == ["Run-time overrides are refused by the environment's policy."]
    assert b"data-show" in response.content  # the dialog opens again, showing the error


def test_production_runs_only_its_deployed_version_the_refusal_is_on_the_version(client_for, web, no_dispatch):
    response = run_form(client_for(web["org_admin"]), web, environment=web["production"].pk)
    assert response.status_code == 400 and not Run.objects.exists()
    assert "promote one first" in response.context["run_form"].errors["version"][0]


def test_a_stage_the_user_may_not_run_in_is_refused_and_nothing_runs(client_for, web, no_dispatch):
    response = run_form(client_for(web["developer"]), web, environment=web["staging"].pk)
    assert response.status_code == 400 and "environment" in response.context["run_form"].errors
    assert not Run.objects.exists()


def test_bad_parameter_input_is_a_form_error(client_for, web, batch_size, no_dispatch):
    response = run_form(client_for(web["developer"]), web, environment=web["development"].pk, param_batch_size="x")
    assert response.status_code == 400 and "param_batch_size" in response.context["run_form"].errors
    assert not Run.objects.exists()


def test_outsiders_get_404_from_every_dialog(client_for, web, outsider):
    client = client_for(outsider)
    for name in ("web:pipeline-run", "web:pipeline-schedule-create"):
        assert client.post(pipeline_url(web, name), {}).status_code == 404
    assert client.get(pipeline_url(web, "web:pipeline-preview")).status_code == 404


# --- the standard edition ------------------------------------------------------------------------------------


@pytest.fixture
def standard(platform_staff, developer, run_setup):
    """A standard-edition organization (one implicit environment) with a project and a member."""
    from apps.connections import services as connection_services
    from apps.pipelines import services as pipeline_services
    from tests.egress_support import sqlite_file
    from tests.runs.conftest import GRAPH, make_warehouse

    owner = run_setup["pipeline"].project.organization.memberships.get(role=Role.OWNER).user
    organization = tenancy_services.organization_create(
        actor=platform_staff, name="Corner shop", slug="corner", edition=Edition.STANDARD, owner=owner
    )
    tenancy_services.membership_add(actor=owner, organization=organization, user=developer, role=Role.MEMBER)
    perms.forget(developer)
    project = pipeline_services.project_create(actor=owner, organization=organization, name="Shop")
    pipeline = pipeline_services.pipeline_create(actor=owner, project=project, name="Sales")
    pipeline_services.pipeline_version_create(actor=owner, pipeline=pipeline, graph=GRAPH)
    environment = project.default_environment
    for name in ("source_table", "target_table"):
        variable_services.variable_create(actor=owner, organization=organization, name=name, default_value="orders")
    for name, path in (("warehouse", make_warehouse(sqlite_file(environment, "w.sqlite3"))), ("reporting", None)):
        role = connection_services.connection_role_create(
            actor=owner, organization=organization, name=name, kind="sqlite"
        )
        path = path or sqlite_file(environment, "r.sqlite3")
        connection_services.connection_binding_set(
            actor=owner, role=role, environment=environment, params={"path": path.name}
        )
    return {"pipeline": pipeline, "environment": environment, "member": developer}


def test_standard_edition_shows_no_selector_and_says_why(client_for, standard, no_dispatch):
    client = client_for(standard["member"])
    response = client.get(reverse("web:pipeline-detail", args=[standard["pipeline"].pk]))
    assert response.status_code == 200
    assert "environment" not in response.context["run_form"].fields
    assert "environment" not in response.context["schedule_form"].fields
    html = response.content.decode()
    assert 'name="environment"' not in html
    assert (
        "If you do not see environment selectors in run or schedule dialogs, your organization may be on an "
        "edition that uses projects alone for separation."
    ) in html
    key = response.context["run_form"].initial["idempotency_key"]
    started = client.post(reverse("web:pipeline-run", args=[standard["pipeline"].pk]), {"idempotency_key": key})
    assert started.status_code == 302
    assert Run.objects.get().environment == standard["environment"]  # the implicit environment


# --- run page ------------------------------------------------------------------------------------------------


def test_run_page_shows_status_starter_parameters_metrics_log_and_provenance(
    client_for, web, batch_size, django_assert_max_num_queries
):
    canary = "s3cr3t-canary-value"
    secret = secret_services.secret_create(
        actor=web["org_admin"],
        organization=web["org"],
        name="api_token",
        value=canary,
        allowed_environments=[web["development"]],
    )
    variable_services.variable_create(
        actor=web["org_admin"], organization=web["org"], name="api_token", type="secret", default_secret=secret
    )
    run = run_services.run_create(
        actor=web["developer"], pipeline=web["pipeline"], environment=web["development"], parameters={"batch_size": 9}
    )
    executed(run)
    client = client_for(web["developer"])
    url = reverse("web:run-detail", args=[run.pk])
    client.get(url)
    with django_assert_max_num_queries(RUN_PAGE_MAX_QUERIES):
        response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'data-testid="run-status" role="status" aria-live="polite">succeeded<' in html
    assert response.context["started_by"] == "started by hand by dev"
    assert response.context["parameters"] == [("batch_size", 9)]
    assert [d["node"] for d in response.context["destinations"]] == ["orders_out"]
    rows = {m["label"]: m["value"] for m in response.context["destinations"][0]["metrics"]}
    assert rows["rows"] == 100 and rows["distinct keys"] == 100
    # ...and the column profiles, against the expectations (a development run has no baseline).
    assert sorted(c["column"] for c in response.context["data_diff"][0]["rows"]) == [
        "amount",
        "customer_id",
        "order_id",
    ]
    assert 'data-testid="data-diff-orders_out"' in html and "<svg" in html
    assert response.context["log_level"] == "DEBUG" and any(" DEBUG " in line for line in response.context["log_lines"])
    variables = {v["name"]: v for v in response.context["configuration"]["variables"]}
    assert variables["batch_size"]["source"] == "parameter" and variables["batch_size"]["value"] == 9
    assert variables["api_token"]["secret"] and variables["api_token"]["value"] == "secret://api_token"
    assert canary not in html
    assert response.context["actions"]["rerun"].allowed and not response.context["actions"]["cancel"].allowed
    assert '<script src="/static/web/run.js" defer>' in html and 'data-finished="true"' in html


def test_a_production_run_logs_tersely(client_for, web, no_dispatch):
    run = executed(
        run_services.run_create(actor=web["org_admin"], pipeline=web["pipeline"], environment=web["staging"])
    )
    response = client_for(web["org_admin"]).get(reverse("web:run-detail", args=[run.pk]))
    assert response.context["log_level"] == "INFO"
    lines = response.context["log_lines"]
    assert lines and not any(" DEBUG " in line for line in lines)


def test_run_page_of_a_staging_run_shows_the_baseline_comparison(client_for, web, django_assert_max_num_queries):
    run_services.deploy(
        actor=web["org_admin"], pipeline=web["pipeline"], environment=web["production"], version=web["version"]
    )
    baseline = executed(
        run_services.run_create(actor=web["org_admin"], pipeline=web["pipeline"], environment=web["production"])
    )
    staging = executed(
        run_services.run_create(actor=web["org_admin"], pipeline=web["pipeline"], environment=web["staging"])
    )
    client = client_for(web["org_admin"])
    client.get(reverse("web:run-detail", args=[staging.pk]))
    with django_assert_max_num_queries(RUN_PAGE_MAX_QUERIES):
        response = client.get(reverse("web:run-detail", args=[staging.pk]))
    assert response.context["baseline_run"] == baseline and response.context["baseline"]["passed"] is True
    measure = {m["label"]: m for m in response.context["destinations"][0]["metrics"]}
    assert measure["rows"]["baseline"] == 100 and measure["rows"]["delta"] == 0
    assert b"within the baseline" in response.content


def test_run_status_is_polled_as_json_and_404_for_outsiders(client_for, web, outsider, no_dispatch):
    run = run_services.run_create(actor=web["developer"], pipeline=web["pipeline"], environment=web["development"])
    status = client_for(web["developer"]).get(reverse("web:run-status", args=[run.pk]))
    assert status.json() == {"id": run.pk, "status": "queued", "finished": False}
    assert status["Cache-Control"] == "no-store"
    page = client_for(web["developer"]).get(reverse("web:run-detail", args=[run.pk]))
    assert b'data-finished="false"' in page.content and b"Cancel run" in page.content
    for name in ("web:run-detail", "web:run-status"):
        assert client_for(outsider).get(reverse(name, args=[run.pk])).status_code == 404
    assert client_for(outsider).post(reverse("web:run-cancel", args=[run.pk])).status_code == 404


def test_cancel_and_rerun_go_through_run_actions(client_for, web, no_dispatch):
    client = client_for(web["developer"])
    run = run_services.run_create(actor=web["developer"], pipeline=web["pipeline"], environment=web["development"])
    cancelled = client.post(reverse("web:run-cancel", args=[run.pk]))
    run.refresh_from_db()
    assert cancelled.status_code == 302 and run.status == RunStatus.CANCELLED
    again = client.post(reverse("web:run-cancel", args=[run.pk]))
    assert again.status_code == 409 and f"Run {run.pk} is already cancelled." in again.context["action_error"]
    rerun = client.post(reverse("web:run-rerun", args=[run.pk]))
    newest = Run.objects.order_by("-pk").first()
    assert rerun.status_code == 302 and rerun["Location"] == reverse("web:run-detail", args=[newest.pk])
    assert newest.pk != run.pk and newest.requested_by == web["developer"]


def test_a_viewer_without_run_rights_sees_no_buttons_and_gets_403(client_for, web, no_dispatch):
    run = executed(
        run_services.run_create(actor=web["org_admin"], pipeline=web["pipeline"], environment=web["staging"])
    )
    client = client_for(web["staging_approver"])
    page = client.get(reverse("web:run-detail", args=[run.pk]))
    assert page.status_code == 200 and b"Run again</button>" not in page.content
    assert b"you lack run_in_environment" in page.content
    refused = client.post(reverse("web:run-rerun", args=[run.pk]))
    assert refused.status_code == 403 and Run.objects.count() == 1


# --- schedule dialog ----------------------------------------------------------------------------------------


def schedule_post(client, w, **data):
    return client.post(pipeline_url(w, "web:pipeline-schedule-create"), data)


def test_schedule_dialog_creates_a_schedule_with_its_next_fire_times(client_for, web):
    client = client_for(web["developer"])
    response = schedule_post(
        client, web, environment=web["development"].pk, cron="30 6 * * 1-5", timezone="Europe/Paris", enabled=""
    )
    schedule = Schedule.objects.get()
    assert response.status_code == 302 and schedule.owner == web["developer"]
    assert schedule.enabled  # v1 is deployed in development: following the deployment means on
    page = client.get(pipeline_url(web))
    (item,) = page.context["schedules"]
    assert len(item["next"]) == 5 and item["may_edit"]
    assert all(t["text"].endswith(("CET", "CEST")) and " 06:30 " in t["text"] for t in item["next"])


def test_bad_cron_is_a_400_on_the_field_and_nothing_is_saved(client_for, web):
    response = schedule_post(
        client_for(web["developer"]), web, environment=web["development"].pk, cron="61 * * * *", timezone="UTC"
    )
    assert response.status_code == 400 and not Schedule.objects.exists()
    assert "cron" in response.context["schedule_form"].errors and response.context["open_dialog"] == "schedule"
    zone = schedule_post(
        client_for(web["developer"]), web, environment=web["development"].pk, cron="0 6 * * *", timezone="Mars/Olympus"
    )
    assert zone.status_code == 400 and "timezone" in zone.context["schedule_form"].errors


def test_schedule_in_a_stage_without_rights_is_403_and_locked_production_needs_more(client_for, web):
    refused = schedule_post(
        client_for(web["developer"]), web, environment=web["staging"].pk, cron="0 6 * * *", timezone="UTC"
    )
    assert refused.status_code == 403 and not Schedule.objects.exists()
    assert "manage_schedules" in refused.context["schedule_form"].non_field_errors()[0]
    editor = web["staging_approver"]
    env_services.permission_grant(
        actor=web["org_admin"], environment=web["production"], codename=perms.CHANGE_CONFIG, user=editor
    )
    env_services.permission_grant(
        actor=web["org_admin"], environment=web["production"], codename=perms.VIEW, user=editor
    )
    perms.forget(editor)
    locked = schedule_post(client_for(editor), web, environment=web["production"].pk, cron="0 6 * * *", timezone="UTC")
    assert locked.status_code == 403 and not Schedule.objects.exists()  # production's policy is locked


def test_schedule_edit_switches_it_off_and_delete_removes_it(client_for, web):
    schedule = run_services.schedule_save(
        actor=web["org_admin"], pipeline=web["pipeline"], environment=web["development"], cron="0 6 * * *"
    )
    client = client_for(web["developer"])
    edited = client.post(
        reverse("web:schedule-update", args=[schedule.pk]), {"cron": "0 7 * * *", "timezone": "UTC", "enabled": "false"}
    )
    schedule.refresh_from_db()
    assert edited.status_code == 302 and schedule.cron == "0 7 * * *" and not schedule.enabled
    bad = client.post(
        reverse("web:schedule-update", args=[schedule.pk]), {"cron": "nope", "timezone": "UTC", "enabled": "true"}
    )
    schedule.refresh_from_db()
    assert bad.status_code == 400 and schedule.cron == "0 7 * * *" and not schedule.enabled
    deleted = client.post(reverse("web:schedule-delete", args=[schedule.pk]))
    assert deleted.status_code == 302 and not Schedule.objects.exists()


def test_a_schedule_the_user_may_not_edit_is_refused_with_403(client_for, web):
    schedule = run_services.schedule_save(
        actor=web["org_admin"], pipeline=web["pipeline"], environment=web["staging"], cron="0 6 * * *"
    )
    client = client_for(web["developer"])  # views staging, may not edit its schedules
    page = client.get(pipeline_url(web))
    assert page.context["schedules"][0]["may_edit"] is False
    refused = client.post(reverse("web:schedule-update", args=[schedule.pk]), {"cron": "0 7 * * *", "timezone": "UTC"})
    assert refused.status_code == 403
    assert client.post(reverse("web:schedule-delete", args=[schedule.pk])).status_code == 403
    schedule.refresh_from_db()
    assert schedule.cron == "0 6 * * *"


def test_schedule_preview_answers_the_next_five_fire_times_in_the_time_zone(client_for, web):
    client = client_for(web["developer"])
    answer = client.get(reverse("web:schedule-preview"), {"cron": "0 9 * * *", "timezone": "America/New_York"})
    times = answer.json()["next"]
    assert answer.status_code == 200 and len(times) == 5
    assert all(t["iso"].endswith(("-05:00", "-04:00")) and " 09:00 " in t["text"] for t in times)
    bad = client.get(reverse("web:schedule-preview"), {"cron": "every day", "timezone": "UTC"})
    assert bad.status_code == 400 and "cron" in bad.json()["error"]


def test_pipeline_page_with_schedules_costs_a_bounded_number_of_queries(client_for, web, django_assert_max_num_queries):
    for environment in (web["development"], web["staging"], web["production"]):
        run_services.schedule_save(
            actor=web["org_admin"], pipeline=web["pipeline"], environment=environment, cron="0 6 * * *"
        )
    client = client_for(web["developer"])
    client.get(pipeline_url(web))
    # 32 before; +3 for "My development values" (the member's rows, its environment select) and the
    # stages offering the sample toggle; +4 for the triggers (their list and the trigger dialog's
    # environment, pipeline and secret selects). Constant: tests/core/test_list_paths.py grows the rows.
    with django_assert_max_num_queries(39):
        assert client.get(pipeline_url(web)).status_code == 200


# --- preview -----------------------------------------------------------------------------------------------------


def preview_get(client, w, **query):
    return client.get(pipeline_url(w, "web:pipeline-preview"), query)


def test_preview_shows_capped_rows_of_one_source_as_a_table(client_for, web):
    client = client_for(web["developer"])
    page = client.get(pipeline_url(web))
    assert list(page.context["preview_form"].fields["environment"].queryset) == [web["development"]]
    response = preview_get(client, web, environment=web["development"].pk, node="orders_src", limit=5)
    assert response.status_code == 200
    preview = response.context["preview"]
    assert preview["columns"] == ["order_id", "customer_id", "amount"] and len(preview["rows"]) == 5
    assert response.content.decode().count('<tr><td class="mono">') == 5


def test_preview_refuses_production_and_oversize_limits(client_for, web):
    client = client_for(web["org_admin"])
    page = client.get(pipeline_url(web))
    offered = list(page.context["preview_form"].fields["environment"].queryset)
    assert web["production"] not in offered and web["development"] in offered
    production = preview_get(client, web, environment=web["production"].pk, node="orders_src", limit=5)
    assert production.status_code == 400 and "environment" in production.context["preview_form"].errors
    too_many = preview_get(client, web, environment=web["development"].pk, node="orders_src", limit=500)
    assert too_many.status_code == 400 and "limit" in too_many.context["preview_form"].errors


def test_preview_answer_is_the_rule_the_preview_service_enforces(web):
    assert run_services.preview_answer(web["org_admin"], web["development"]).allowed
    answer = run_services.preview_answer(web["org_admin"], web["production"])
    assert not answer.allowed and answer.error.status == 403
    assert not run_services.preview_answer(web["staging_approver"], web["staging"]).allowed


# --- the admin's Run action ----------------------------------------------------------------------------------


def test_admin_run_action_opens_the_run_dialog_of_the_pipeline(client_for, web):
    from apps.pipelines import services as pipeline_services

    client = client_for(web["org_admin"])
    changelist = reverse("admin:pipelines_pipeline_changelist")
    assert "run_pipeline" in client.get(changelist).content.decode()
    one = client.post(changelist, {"action": "run_pipeline", "_selected_action": [web["pipeline"].pk]})
    assert one.status_code == 302 and one["Location"] == pipeline_url(web) + "?run=1"
    page = client.get(one["Location"])
    assert (
        page.context["open_dialog"] == "run"
        and b'id="run-dialog" aria-labelledby="run-dialog-h" data-show' in page.content
    )
    other = pipeline_services.pipeline_create(actor=web["org_admin"], project=web["project"], name="Refunds")
    both = client.post(
        changelist, {"action": "run_pipeline", "_selected_action": [web["pipeline"].pk, other.pk]}, follow=True
    )
    assert "Select exactly one pipeline to run." in both.content.decode()
    run_admin = client.get(reverse("admin:runs_run_changelist"))
    assert run_admin.status_code == 200
