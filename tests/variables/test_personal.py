"""Personal overrides (issue #13 item 6): a member's own value for a variable in a development
environment applies to their resolves, runs and previews only (provenance `personal`); refused outside
development, for what the member cannot see, and for values an override would be refused; never in
another member's answer, a promotion plan, a deployment, an export or a history row's secret."""

import io
import json
import logging
import sqlite3

import pytest
from django.core.management import call_command

from apps.approvals import services as approval_services
from apps.core.errors import NotFound, PermissionDenied, ValidationFailed
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.resolution import engine
from apps.runs import services as run_services
from apps.runs.models import RunStatus, Trigger
from apps.secrets import services as secret_services
from apps.variables import services
from apps.variables.models import PersonalOverride, Variable
from tests.conftest import fresh
from tests.runs.conftest import run_setup  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db

PERSONAL = "/api/v1/personal-overrides/"
CANARY = "PERSONAL-CANARY-7c1e9a05"


def resolve_url(pipeline, environment="development") -> str:
    return f"/api/v1/pipelines/{pipeline.pk}/resolve/?environment={environment}"


def fields_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"].get("fields", {})


@pytest.fixture
def target_table(org):
    return Variable.objects.get(organization=org, name="target_table")


@pytest.fixture
def mine(run_setup, members, stages, target_table):  # noqa: F811
    """The developer's personal target table in development."""
    developer = fresh(members["developer"])
    services.personal_override_set(
        actor=developer, variable=target_table, environment=stages["development"], value="mine_mart"
    )
    return developer


def test_the_authors_resolve_shows_their_value_with_provenance_personal_and_nobody_elses(
    run_setup,  # noqa: F811
    members,
    org_admin,
    stages,
    target_table,
    api,
):
    developer, other = members["developer"], members["staging_approver"]
    created = api(developer).post(
        PERSONAL,
        {"variable": target_table.pk, "environment": "development", "value": "mine_mart"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["environment"] == "development" and created.json()["value"] == "mine_mart"

    pipeline = run_setup["pipeline"]
    shared = api(org_admin).get(resolve_url(pipeline)).json()["variables"]["target_table"]
    assert (shared["value"], shared["source"]) == ("orders_mart", "default:organization")
    for _ in range(2):  # the second answer comes from the cache: still the author's own
        own = api(developer).get(resolve_url(pipeline)).json()["variables"]["target_table"]
        assert (own["value"], own["source"], own["scope"]) == ("mine_mart", "personal", "organization")
        theirs = api(other).get(resolve_url(pipeline)).json()["variables"]["target_table"]
        assert (theirs["value"], theirs["source"]) == ("orders_mart", "default:organization")

    # A changed personal value is seen at once (no configuration revision is bumped for it).
    row_id = created.json()["id"]
    assert api(developer).patch(f"{PERSONAL}{row_id}/", {"value": "other_mart"}, format="json").status_code == 200
    assert api(developer).get(resolve_url(pipeline)).json()["variables"]["target_table"]["value"] == "other_mart"
    # Staging has no personal layer, even for the author.
    staging = api(org_admin).get(resolve_url(pipeline, "staging")).json()["variables"]["target_table"]
    assert staging["source"] != "personal"
    assert api(developer).delete(f"{PERSONAL}{row_id}/").status_code == 204
    assert api(developer).get(resolve_url(pipeline)).json()["variables"]["target_table"]["source"] != "personal"


def test_other_members_share_one_snapshot_and_one_answer(run_setup, mine, org_admin, stages):  # noqa: F811
    pipeline, development = run_setup["pipeline"], stages["development"]
    engine.resolve(pipeline, development, personal_user=mine)
    shared = engine.resolve(pipeline, development, personal_user=fresh(org_admin))
    # The personal answer has its own key; the shared one is everyone else's (cached without a user).
    assert engine.resolve(pipeline, development)["resolved_at"] == shared["resolved_at"]
    assert shared["variables"]["target_table"]["source"] == "default:organization"


@pytest.mark.parametrize("slug", ["staging", "production"])
def test_refused_outside_development_naming_the_field_and_nothing_written(
    run_setup,  # noqa: F811
    org_admin,
    target_table,
    api,
    slug,
):
    response = api(org_admin).post(
        PERSONAL, {"variable": target_table.pk, "environment": slug, "value": "x"}, format="json"
    )
    assert response.status_code == 400
    assert "development" in fields_of(response)["environment"][0]
    assert not PersonalOverride.objects.exists()


def test_refused_for_what_the_member_cannot_see(run_setup, members, other_org, other_owner, target_table, api):  # noqa: F811
    developer = members["developer"]
    # Production is not visible to a developer: the same answer as an environment that does not exist.
    response = api(developer).post(
        PERSONAL, {"variable": target_table.pk, "environment": "production", "value": "x"}, format="json"
    )
    assert response.status_code == 400 and "No environment" in fields_of(response)["environment"][0]
    foreign = services.variable_create(actor=other_owner, organization=other_org, name="region", default_value="eu")
    response = api(developer).post(
        PERSONAL, {"variable": foreign.pk, "environment": "development", "value": "x"}, format="json"
    )
    assert response.status_code == 400 and "variable" in fields_of(response)
    with pytest.raises(ValidationFailed) as raised:
        services.personal_override_set(
            actor=fresh(developer), variable=foreign, environment=target_table.organization.environments.first()
        )
    assert "variable" in raised.value.fields
    with pytest.raises(PermissionDenied):
        production = target_table.organization.environments.get(slug="production")
        services.personal_override_set(actor=fresh(developer), variable=target_table, environment=production, value="x")
    assert not PersonalOverride.objects.exists()


@pytest.mark.parametrize(
    ("definition", "payload", "field"),
    [
        ({"type": "integer", "default_value": 5, "max_value": 10}, {"value": "many"}, "value"),
        ({"type": "integer", "default_value": 5, "max_value": 10}, {"value": 11}, "value"),
        ({"type": "string", "default_value": "a", "choices": ["a", "b"]}, {"value": "c"}, "value"),
        ({"type": "string", "default_value": "a"}, {}, "value"),
        ({"type": "string", "default_value": "a"}, {"value": "{{ api_token }}"}, "value"),
        ({"type": "secret"}, {"value": "plain"}, "value"),
        ({"type": "secret"}, {}, "secret"),
        ({"type": "secret"}, {"secret": "prod_only"}, "secret"),
        ({"type": "string", "default_value": "a"}, {"secret": "dev_token"}, "secret"),
    ],
)
def test_values_are_validated_exactly_like_overrides(
    org, org_admin, stages, members, dev_secret, api, definition, payload, field
):
    secret_services.secret_create(
        actor=org_admin, organization=org, name="prod_only", value="p-1", allowed_environments=[stages["production"]]
    )
    services.variable_create(actor=org_admin, organization=org, name="api_token", type="secret")
    variable = services.variable_create(actor=org_admin, organization=org, name="knob", **definition)
    body = {"variable": variable.pk, "environment": "development", **payload}
    response = api(members["developer"]).post(PERSONAL, body, format="json")
    assert response.status_code == 400, response.content
    assert field in fields_of(response)
    # The override service gives the same answer on the same input.
    secret = {"dev_token": dev_secret}.get(payload.get("secret")) if "secret" in payload else None
    if payload.get("secret") in (None, "dev_token"):
        with pytest.raises(ValidationFailed) as raised:
            services.validate_override(
                actor=fresh(org_admin),
                variable=variable,
                environment=stages["development"],
                value=payload.get("value"),
                secret=secret,
            )
        assert field in raised.value.fields
    assert not PersonalOverride.objects.exists()


def test_only_the_callers_own_rows_are_listed_or_reachable(run_setup, mine, members, org_admin, api):  # noqa: F811
    row = PersonalOverride.objects.get()
    assert [r["id"] for r in api(mine).get(PERSONAL).json()["results"]] == [row.pk]
    for someone in (members["staging_approver"], org_admin):
        client = api(someone)
        assert client.get(PERSONAL).json()["results"] == []
        assert client.get(f"{PERSONAL}{row.pk}/").status_code == 404
        assert client.patch(f"{PERSONAL}{row.pk}/", {"value": "theirs"}, format="json").status_code == 404
        assert client.delete(f"{PERSONAL}{row.pk}/").status_code == 404
    with pytest.raises(NotFound):
        services.personal_override_delete(actor=fresh(org_admin), override=row)
    row.refresh_from_db()
    assert row.value == "mine_mart"


def test_applied_in_the_authors_run_and_not_in_another_members(
    run_setup,  # noqa: F811
    mine,
    members,
    django_capture_on_commit_callbacks,
):
    other = fresh(members["staging_approver"])
    with django_capture_on_commit_callbacks(execute=False):
        own = run_services.run_create(actor=mine, pipeline=run_setup["pipeline"])
        theirs = run_services.run_create(actor=other, pipeline=run_setup["pipeline"])
        scheduled = run_services.run_create(actor=mine, pipeline=run_setup["pipeline"], trigger=Trigger.SCHEDULE)
    assert own.resolved["variables"]["target_table"] == {
        "type": "string",
        "scope": "organization",
        "source": "personal",
        "value": "mine_mart",
        "secret": None,
    }
    assert theirs.resolved["variables"]["target_table"]["source"] == "default:organization"
    assert scheduled.resolved["variables"]["target_table"]["source"] == "default:organization"
    for run in (own, theirs):
        assert run_services.run_execute(run.pk).status == RunStatus.SUCCEEDED
    with sqlite3.connect(run_setup["paths"]["development"]["target"]) as conn:
        tables = {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"mine_mart", "orders_mart"} <= tables


def test_applied_in_the_authors_preview_only(run_setup, members, stages, org):  # noqa: F811
    source = run_setup["paths"]["development"]["source"]
    with sqlite3.connect(source) as conn:
        conn.execute("CREATE TABLE mine AS SELECT * FROM orders WHERE order_id <= 3")
    developer = fresh(members["developer"])
    services.personal_override_set(
        actor=developer,
        variable=Variable.objects.get(organization=org, name="source_table"),
        environment=stages["development"],
        value="mine",
    )
    pipeline = run_setup["pipeline"]
    own = run_services.preview(
        actor=developer, pipeline=pipeline, environment=stages["development"], node_id="orders_src", limit=200
    )
    theirs = run_services.preview(
        actor=fresh(members["staging_approver"]),
        pipeline=pipeline,
        environment=stages["development"],
        node_id="orders_src",
        limit=200,
    )
    assert (len(own["rows"]), len(theirs["rows"])) == (3, 100)


def test_never_in_a_plan_a_deployment_or_an_export(run_setup, mine, org, org_admin, stages):  # noqa: F811
    services.personal_override_set(
        actor=mine,
        variable=Variable.objects.get(organization=org, name="source_table"),
        environment=stages["development"],
        value=CANARY,
    )
    pipeline, version = run_setup["pipeline"], run_setup["version"]
    deployment = run_services.deploy_direct(
        actor=fresh(org_admin), pipeline=pipeline, environment=stages["development"], version=version
    )
    assert CANARY not in json.dumps(deployment.resolved)
    env_services.permission_grant(
        actor=org_admin, environment=stages["staging"], codename=perms.REQUEST_PROMOTION, user=mine
    )
    env_services.permission_grant(actor=org_admin, environment=stages["staging"], codename=perms.VIEW, user=mine)
    promotion, _ = approval_services.promotion_request_create(
        actor=fresh(mine), pipeline=pipeline, version=version, source=stages["development"]
    )
    assert CANARY not in json.dumps(promotion.plan, default=str)
    out = io.StringIO()
    call_command("export_config", "acme", stdout=out)
    assert CANARY not in out.getvalue()
    # Other views built on resolution are shared too: the matrix and the environment diff.
    from apps.resolution import services as resolution_services

    assert CANARY not in json.dumps(resolution_services.matrix(fresh(mine), run_setup["project"]))
    diff = resolution_services.environment_diff(fresh(mine), pipeline, stages["development"], stages["staging"])
    assert CANARY not in json.dumps(diff)


def test_a_secret_personal_value_is_a_reference_and_the_canary_never_shows(
    org,
    org_admin,
    stages,
    members,
    api,
    client,
    caplog,
    project,
    pipeline,
    version,
):
    caplog.set_level(logging.DEBUG)
    secret_services.secret_create(
        actor=org_admin, organization=org, name="my_token", value=CANARY, allowed_environments=[stages["development"]]
    )
    variable = services.variable_create(actor=org_admin, organization=org, name="api_token", type="secret")
    developer = members["developer"]
    created = api(developer).post(
        PERSONAL, {"variable": variable.pk, "environment": "development", "secret": "my_token"}, format="json"
    )
    assert created.status_code == 201, created.content
    listed = api(developer).get(PERSONAL)
    answer = api(developer).get(resolve_url(pipeline))
    entry = answer.json()["variables"]["api_token"]
    assert (entry["source"], entry["secret"], entry["value"]) == ("personal", "secret://my_token", None)
    row = PersonalOverride.objects.get()
    history = list(row.history.values())
    client.force_login(developer)
    page = client.get(f"/pipelines/{pipeline.pk}/")
    for text in (created.content, listed.content, answer.content, page.content, json.dumps(history, default=str)):
        assert CANARY.encode() not in (text if isinstance(text, bytes) else text.encode())
    assert CANARY not in caplog.text


def test_a_personal_value_the_changed_definition_refuses_is_skipped_with_a_warning(
    run_setup,  # noqa: F811
    org,
    org_admin,
    stages,
    members,
):
    developer = fresh(members["developer"])
    knob = services.variable_create(actor=org_admin, organization=org, name="knob", type="integer", default_value=1)
    services.personal_override_set(actor=developer, variable=knob, environment=stages["development"], value=8)
    answer = engine.resolve(run_setup["pipeline"], stages["development"], personal_user=developer)
    assert (answer["variables"]["knob"]["value"], answer["variables"]["knob"]["source"]) == (8, "personal")
    services.variable_update(actor=fresh(org_admin), variable=knob, max_value=5)
    answer = engine.resolve(run_setup["pipeline"], stages["development"], personal_user=developer)
    assert (answer["variables"]["knob"]["value"], answer["variables"]["knob"]["source"]) == (1, "default:organization")
    assert [w["code"] for w in answer["warnings"]] == ["personal_ignored"] and not answer["errors"]
