"""Triggers through the API, the admin and the pipeline page: CRUD with ETag, bad input as a 4xx
naming the field (nothing written), the schedules' permission rule, and the signing secret canary
(never in a response, page or history row)."""

import json

import pytest
from django.urls import reverse

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.pipelines import services as pipeline_services
from apps.runs import services
from apps.runs.models import PipelineTrigger, TriggerKind
from apps.secrets import services as secret_services
from tests.variables.adminforms import errors_of, login

from .conftest import GRAPH

TRIGGERS = "/api/v1/triggers/"
CANARY = "CANARY-trigger-signing-5d1e-do-not-leak"


@pytest.fixture
def pipelines(run_setup, org, org_admin):
    """The fixture's pipeline (Orders) and a second one (Billing), and a local signing secret."""
    billing = pipeline_services.pipeline_create(actor=org_admin, project=run_setup["project"], name="Billing")
    pipeline_services.pipeline_version_create(actor=org_admin, pipeline=billing, graph=GRAPH)
    secret = secret_services.secret_create(actor=org_admin, organization=org, name="hook_key", value=CANARY)
    return {"orders": run_setup["pipeline"], "billing": billing, "secret": secret}


def fields_of(response) -> dict:
    return response.json()["error"].get("fields", {})


# --- API ----------------------------------------------------------------------------------------


def test_trigger_crud(api, members, pipelines):
    client = api(members["developer"])
    created = client.post(
        TRIGGERS,
        {
            "pipeline": pipelines["billing"].pk,
            "environment": "development",
            "kind": "on_success",
            "upstream_pipeline": pipelines["orders"].pk,
        },
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["enabled"] is True and body["owner"] == "dev" and body["hook_url"] is None  # development: on
    assert body["upstream_pipeline_slug"] == pipelines["orders"].slug
    url = f"{TRIGGERS}{body['id']}/"
    etag = client.get(url)["ETag"]
    off = client.patch(url, {"enabled": False}, format="json", HTTP_IF_MATCH=etag)
    assert off.status_code == 200 and off.json()["enabled"] is False
    assert client.patch(url, {"enabled": True}, format="json", HTTP_IF_MATCH=etag).status_code == 412
    listed = client.get(TRIGGERS, {"environment": "development", "kind": "on_success", "enabled": "false"}).json()
    assert [row["id"] for row in listed["results"]] == [body["id"]]
    assert client.delete(url).status_code == 204
    assert not PipelineTrigger.objects.exists()


def test_webhook_trigger_shows_its_url_and_the_secret_as_a_reference_only(api, org_admin, pipelines):
    client = api(org_admin)
    created = client.post(
        TRIGGERS,
        {"pipeline": pipelines["orders"].pk, "environment": "staging", "kind": "webhook", "signing_secret": "hook_key"},
        format="json",
    )
    assert created.status_code == 201, created.content
    trigger = PipelineTrigger.objects.get()
    assert created.json()["hook_url"] == f"/api/v1/triggers/hooks/{trigger.token}/" and len(trigger.token) >= 40
    assert created.json()["signing_secret"] == pipelines["secret"].display_reference
    # The canary: no response, list, admin page, pipeline page or history row holds the secret's value.
    seen = [
        created.content.decode(),
        client.get(TRIGGERS).content.decode(),
        client.get(f"{TRIGGERS}{trigger.pk}/").content.decode(),
        login(org_admin).get(reverse("admin:runs_pipelinetrigger_change", args=[trigger.pk])).content.decode(),
        login(org_admin).get(reverse("web:pipeline-detail", args=[pipelines["orders"].pk])).content.decode(),
        json.dumps(list(PipelineTrigger.history.values()), default=str),
    ]
    assert all(CANARY not in text for text in seen)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "sometimes"}, "kind"),
        ({"environment": "nowhere"}, "environment"),
        ({"upstream_pipeline": 987654321}, "upstream_pipeline"),
        ({"upstream_pipeline": None}, "upstream_pipeline"),
        ({"kind": "webhook", "signing_secret": "hook_key"}, "upstream_pipeline"),
        ({"kind": "webhook", "upstream_pipeline": None, "signing_secret": "no_such_secret"}, "signing_secret"),
        ({"kind": "webhook", "upstream_pipeline": None}, "signing_secret"),
        ({"signing_secret": "hook_key"}, "signing_secret"),
        ({"enabled": "on"}, "enabled"),
        ({"pipeline": 0}, "pipeline"),
        ({"schedule": "daily"}, "schedule"),
    ],
)
def test_trigger_bad_input(api, members, pipelines, payload, field):
    body = {
        "pipeline": pipelines["billing"].pk,
        "environment": "development",
        "kind": "on_success",
        "upstream_pipeline": pipelines["orders"].pk,
        **payload,
    }
    body = {k: v for k, v in body.items() if v is not None}
    response = api(members["developer"]).post(TRIGGERS, body, format="json")
    assert response.status_code == 400, response.content
    assert field in fields_of(response)
    assert not PipelineTrigger.objects.exists()


def test_a_cycle_is_a_400_naming_the_chain(api, org_admin, pipelines):
    client = api(org_admin)
    body = {"environment": "development", "kind": "on_success"}
    first = client.post(
        TRIGGERS, {**body, "pipeline": pipelines["billing"].pk, "upstream_pipeline": pipelines["orders"].pk}
    )
    assert first.status_code == 201, first.content
    cycle = client.post(
        TRIGGERS, {**body, "pipeline": pipelines["orders"].pk, "upstream_pipeline": pipelines["billing"].pk}
    )
    assert cycle.status_code == 400
    assert "Orders → Billing → Orders" in fields_of(cycle)["upstream_pipeline"][0]
    assert PipelineTrigger.objects.count() == 1


def test_production_triggers_are_off_until_deployed(api, org_admin, pipelines, stages):
    client = api(org_admin)
    body = {
        "pipeline": pipelines["billing"].pk,
        "environment": "production",
        "kind": "on_success",
        "upstream_pipeline": pipelines["orders"].pk,
    }
    forced = client.post(TRIGGERS, {**body, "enabled": True}, format="json")
    assert forced.status_code == 400 and "enabled" in fields_of(forced)
    created = client.post(TRIGGERS, body, format="json")
    assert created.status_code == 201 and created.json()["enabled"] is False
    url = f"{TRIGGERS}{created.json()['id']}/"
    assert client.patch(url, {"enabled": True}, format="json").status_code == 400
    deployment = services.deploy(
        actor=org_admin,
        pipeline=pipelines["billing"],
        environment=stages["production"],
        version=pipelines["billing"].versions.get(),
    )
    shown = client.get(url).json()
    assert shown["enabled"] is True and shown["switched_on_by"] == deployment.pk


def test_trigger_permissions_follow_the_schedules_rule(
    api, org_admin, members, outsider, run_key, pipelines, stages, grant
):
    developer = members["developer"]
    body = {
        "pipeline": pipelines["billing"].pk,
        "environment": "staging",
        "kind": "on_success",
        "upstream_pipeline": pipelines["orders"].pk,
    }
    assert api(developer).post(TRIGGERS, body, format="json").status_code == 403
    assert api(token=run_key[1]).post(TRIGGERS, {**body, "environment": "development"}).status_code == 403
    grant(developer, stages["staging"], perms.VIEW, perms.CHANGE_CONFIG)
    created = api(developer).post(TRIGGERS, body, format="json")
    assert created.status_code == 201, created.content
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], locked=True)
    url = f"{TRIGGERS}{created.json()['id']}/"
    response = api(developer).patch(url, {"enabled": False}, format="json")
    assert response.status_code == 403 and "manage_schedules" in response.json()["error"]["message"]
    assert api(developer).delete(url).status_code == 403
    assert PipelineTrigger.objects.get().enabled is True
    # An outsider sees none of it.
    assert api(outsider).get(url).status_code == 404


# --- admin --------------------------------------------------------------------------------------

TRIGGER_ADD = reverse("admin:runs_pipelinetrigger_add")


def admin_form(pipelines, environment, **overrides):
    return {
        "pipeline": pipelines["billing"].pk,
        "environment": environment.pk,
        "kind": "on_success",
        "upstream_pipeline": pipelines["orders"].pk,
        **overrides,
    }


def test_admin_adds_switches_and_deletes_through_the_service(members, pipelines, stages):
    developer = members["developer"]
    client = login(developer)
    response = client.post(TRIGGER_ADD, admin_form(pipelines, stages["development"]))
    assert response.status_code == 302, errors_of(response)
    trigger = PipelineTrigger.objects.get()
    assert trigger.owner == developer and trigger.enabled is True
    assert trigger.history.get().history_user == developer
    change = reverse("admin:runs_pipelinetrigger_change", args=[trigger.pk])
    response = client.post(change, {"upstream_pipeline": pipelines["orders"].pk})  # the box unchecked: off
    assert response.status_code == 302, errors_of(response)
    trigger.refresh_from_db()
    assert trigger.enabled is False and trigger.history.count() == 2
    delete = reverse("admin:runs_pipelinetrigger_delete", args=[trigger.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302
    assert not PipelineTrigger.objects.exists()


def test_admin_bad_input_is_a_form_error(org_admin, members, pipelines, stages):
    client = login(org_admin)
    client.post(TRIGGER_ADD, admin_form(pipelines, stages["development"]))
    cycle = client.post(
        TRIGGER_ADD,
        admin_form(
            pipelines, stages["development"], pipeline=pipelines["orders"].pk, upstream_pipeline=pipelines["billing"].pk
        ),
    )
    assert cycle.status_code == 200 and "Orders → Billing → Orders" in errors_of(cycle)
    no_secret = client.post(TRIGGER_ADD, admin_form(pipelines, stages["staging"], kind="webhook", upstream_pipeline=""))
    assert "signing secret" in errors_of(no_secret)
    production = client.post(TRIGGER_ADD, admin_form(pipelines, stages["production"], enabled="on"))
    assert "deployed" in errors_of(production)
    assert PipelineTrigger.objects.count() == 1
    for codename in (perms.VIEW, perms.CHANGE_CONFIG):
        env_services.permission_grant(
            actor=org_admin, environment=stages["staging"], codename=codename, user=members["developer"]
        )
    env_services.runtime_policy_update(actor=org_admin, environment=stages["staging"], locked=True)
    locked = login(members["developer"]).post(TRIGGER_ADD, admin_form(pipelines, stages["staging"]))
    assert "manage_schedules" in errors_of(locked) and PipelineTrigger.objects.count() == 1


# --- the pipeline page --------------------------------------------------------------------------


def page_url(pipeline, name="web:pipeline-detail"):
    return reverse(name, args=[pipeline.pk])


def test_the_pipeline_page_adds_lists_switches_and_deletes_triggers(client, members, pipelines, stages):
    client.force_login(members["developer"])
    billing = pipelines["billing"]
    created = client.post(
        page_url(billing, "web:pipeline-trigger-create"),
        {"environment": stages["development"].pk, "kind": "on_success", "upstream_pipeline": pipelines["orders"].pk},
    )
    assert created.status_code == 302, created.content[:2000]
    trigger = PipelineTrigger.objects.get()
    page = client.get(page_url(billing))
    (item,) = page.context["triggers"]
    assert item["trigger"] == trigger and item["may_edit"] and "success of" in page.content.decode()
    switched = client.post(reverse("web:trigger-switch", args=[trigger.pk]), {"enabled": "false"})
    trigger.refresh_from_db()
    assert switched.status_code == 302 and trigger.enabled is False
    assert client.post(reverse("web:trigger-delete", args=[trigger.pk])).status_code == 302
    assert not PipelineTrigger.objects.exists()


def test_page_refusals_are_form_errors_with_their_4xx(client, org_admin, members, pipelines, stages):
    client.force_login(members["developer"])
    orders, billing = pipelines["orders"], pipelines["billing"]
    services.trigger_create(
        actor=org_admin,
        pipeline=billing,
        environment=stages["development"],
        kind=TriggerKind.ON_SUCCESS,
        upstream_pipeline=orders,
    )
    cycle = client.post(
        page_url(orders, "web:pipeline-trigger-create"),
        {"environment": stages["development"].pk, "kind": "on_success", "upstream_pipeline": billing.pk},
    )
    assert cycle.status_code == 400 and cycle.context["open_dialog"] == "trigger"
    assert "Orders → Billing → Orders" in cycle.context["trigger_form"].errors["upstream_pipeline"][0]
    for codename in (perms.VIEW,):
        env_services.permission_grant(
            actor=org_admin, environment=stages["staging"], codename=codename, user=members["developer"]
        )
    perms.forget(members["developer"])
    refused = client.post(
        page_url(billing, "web:pipeline-trigger-create"),
        {"environment": stages["staging"].pk, "kind": "on_success", "upstream_pipeline": orders.pk},
    )
    assert refused.status_code == 403 and "manage_schedules" in refused.context["trigger_form"].non_field_errors()[0]
    bad = client.post(page_url(billing, "web:pipeline-trigger-create"), {"kind": "sometimes"})
    assert bad.status_code == 400 and "kind" in bad.context["trigger_form"].errors
    staged = services.trigger_create(
        actor=org_admin,
        pipeline=billing,
        environment=stages["staging"],
        kind=TriggerKind.ON_SUCCESS,
        upstream_pipeline=orders,
    )
    page = client.get(page_url(billing))
    assert [i["may_edit"] for i in page.context["triggers"]] == [True, False]
    switch = client.post(reverse("web:trigger-switch", args=[staged.pk]), {"enabled": "false"})
    assert switch.status_code == 403 and "manage_schedules" in switch.context["trigger_error"]
    assert client.post(reverse("web:trigger-delete", args=[staged.pk])).status_code == 403
    staged.refresh_from_db()
    assert staged.enabled is True and PipelineTrigger.objects.count() == 2


def test_the_run_page_and_the_api_say_which_upstream_run_started_it(
    client, api, org_admin, pipelines, stages, no_dispatch
):
    upstream = services.run_create(actor=org_admin, pipeline=pipelines["orders"], environment=stages["development"])
    started = services.run_create(
        actor=org_admin,
        pipeline=pipelines["billing"],
        environment=stages["development"],
        trigger="trigger",
        upstream=upstream,
    )
    client.force_login(org_admin)
    page = client.get(reverse("web:run-detail", args=[started.pk])).content.decode()
    assert f"started by a trigger on success of run {upstream.pk}, acting for {org_admin.username}" in page
    shown = api(org_admin).get(f"/api/v1/runs/{started.pk}/").json()
    assert shown["trigger"] == "trigger" and shown["upstream"] == upstream.pk
