"""/api/v1/environments/: happy paths, bad input, permissions, query counts, grants."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.environments import permissions as perms
from apps.environments import services
from apps.environments.models import Environment, EnvironmentUserObjectPermission, FreezeWindow, Kind, RuntimePolicy
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Role

from .conftest import fresh

pytestmark = pytest.mark.django_db

LIST = "/api/v1/environments/"


def detail(environment, suffix=""):
    return f"{LIST}{environment.pk}/{suffix}"


def _error(response, status):
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    return body["error"]


# --- happy paths ------------------------------------------------------------------------------


def test_list_shows_what_the_caller_may_view(api, org_admin, members, stages, outsider):
    names = [e["name"] for e in api(org_admin).get(LIST).json()["results"]]
    assert names == ["Development", "Staging", "Production"] or sorted(names) == [
        "Development",
        "Production",
        "Staging",
    ]
    developer_view = api(members["developer"]).get(LIST).json()["results"]
    assert [e["slug"] for e in developer_view] == ["development"]
    assert set(developer_view[0]["my_permissions"]) == set(perms.DEVELOPMENT_DEFAULTS)
    assert api(outsider).get(LIST).json()["results"] == []


def test_create_with_policy(api, org, org_admin, stages):
    response = api(org_admin).post(
        LIST,
        {
            "organization": "acme",
            "name": "Performance",
            "kind": "custom",
            "promotes_to": "production",
            "policy": {"max_rows": 1000, "allowed_destinations": ["warehouse"]},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["slug"] == "performance" and body["promotes_to"] == "production"
    assert body["policy"]["max_rows"] == 1000 and body["policy"]["allowed_destinations"] == ["warehouse"]
    created = Environment.objects.get(slug="performance")
    assert created.history.first().history_user == org_admin


def test_create_production_gets_locked_policy(api, org, org_admin):
    response = api(org_admin).post(LIST, {"organization": "acme", "name": "Prod", "kind": "production"}, format="json")
    assert response.status_code == 201
    assert response.json()["policy"]["locked"] is True and response.json()["is_protected"] is True


def test_patch_and_delete(api, org_admin, stages):
    client = api(org_admin)
    response = client.patch(detail(stages["staging"]), {"description": "pre-prod", "position": 15}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["description"] == "pre-prod"
    assert client.delete(detail(stages["staging"])).status_code == 204
    assert not Environment.objects.filter(pk=stages["staging"].pk).exists()
    _error(client.delete(detail(stages["production"])), 409)


def test_policy_get_and_patch(api, org_admin, stages):
    client = api(org_admin)
    assert client.get(detail(stages["production"], "policy/")).json()["locked"] is True
    response = client.patch(detail(stages["production"], "policy/"), {"max_rows": 5000}, format="json")
    assert response.status_code == 200 and response.json()["max_rows"] == 5000


def test_freeze_window_lifecycle(api, org_admin, stages):
    client = api(org_admin)
    url = detail(stages["production"], "freeze-windows/")
    response = client.post(
        url,
        {
            "kind": "recurring",
            "cron": "0 22 * * 5",
            "duration_minutes": 600,
            "timezone": "Europe/Paris",
            "reason": "we",
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    window_id = response.json()["id"]
    assert [w["id"] for w in client.get(url).json()] == [window_id]
    assert client.delete(f"{url}{window_id}/").status_code == 204
    assert not FreezeWindow.objects.exists()


# --- bad input: 400 naming the field, nothing written ------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"organization": "acme", "name": "Qa", "colour": "#000000"}, "colour"),
        ({"organization": "acme", "name": "Q\x00a"}, "name"),
        ({"organization": "acme", "name": "Q" * 64}, "name"),
        ({"organization": "acme", "name": "Qa", "position": "first"}, "position"),
        ({"organization": "acme", "name": "Qa", "kind": "moon"}, "kind"),
        ({"organization": "acme", "name": ["Qa"]}, "name"),
        ({"organization": "acme", "name": "Qa", "is_protected": "perhaps"}, "is_protected"),
        ({"organization": "acme", "name": "Qa", "color": "red"}, "color"),
        ({"organization": "acme", "name": "Qa", "policy": {"max_rows": "many"}}, "policy.max_rows"),
        ({"organization": "acme", "name": "Qa", "policy": {"warp": 9}}, "policy.warp"),
        ({"organization": "acme", "name": "1qa"}, "name"),
        ({"organization": "nope", "name": "Qa"}, "organization"),
        ({"name": "Qa"}, "organization"),
    ],
)
def test_create_refuses_bad_input(api, org_admin, stages, payload, field):
    before = Environment.objects.count()
    error = _error(api(org_admin).post(LIST, payload, format="json"), 400)
    assert field in error["fields"], error
    assert Environment.objects.count() == before


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"description": "x", "owner": "me"}, "owner"),
        ({"description": "bad\x00"}, "description"),
        ({"name": "S" * 64}, "name"),
        ({"position": -1}, "position"),
        ({"kind": "production"}, "kind"),
        ({"promotes_to": "staging"}, "promotes_to"),
        ({"promotes_to": "development"}, "promotes_to"),
        ({"promotes_to": "nowhere"}, "promotes_to"),
        ({"is_protected": {"yes": True}}, "is_protected"),
    ],
)
def test_patch_refuses_bad_input(api, org_admin, stages, payload, field):
    staging = stages["staging"]
    history_before = staging.history.count()
    error = _error(api(org_admin).patch(detail(staging), payload, format="json"), 400)
    assert field in error["fields"], error
    assert staging.history.count() == history_before
    fresh_row = Environment.objects.get(pk=staging.pk)
    assert (fresh_row.name, fresh_row.kind, fresh_row.promotes_to, fresh_row.description) == (
        "Staging",
        Kind.STAGING,
        stages["production"],
        "",
    )


def test_promotes_to_another_organizations_environment_is_refused(api, org_admin, stages, other_env):
    error = _error(
        api(org_admin).patch(detail(stages["production"]), {"promotes_to": other_env.slug}, format="json"), 400
    )
    assert "promotes_to" in error["fields"]
    assert Environment.objects.get(pk=stages["production"].pk).promotes_to is None


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"max_rows": "lots"}, "max_rows"),
        ({"sample_percent": 250}, "sample_percent"),
        ({"log_level": "LOUD"}, "log_level"),
        ({"allowed_destinations": "warehouse"}, "allowed_destinations"),
        ({"allowed_destinations": ["x" * 101]}, "allowed_destinations"),
        ({"locked": False, "speed": 3}, "speed"),
        ({"notification_channels": [999999]}, "notification_channels"),
        ({"sample_percent": 5}, "sample_percent"),  # development samples by rows already
        ({"expectations": {"email": {"not_null": "yes"}}}, "expectations.email.not_null"),
        ({"expectations": {"amount": {"max_null_share": 2}}}, "expectations.amount.max_null_share"),
        ({"expectations": {"amount": {"max_change": {"median": 5}}}}, "expectations.amount.max_change.median"),
        ({"expectations": ["email"]}, "expectations"),
    ],
)
def test_policy_patch_refuses_bad_input(api, org_admin, stages, payload, field):
    development = stages["development"]
    history_before = RuntimePolicy.history.filter(environment_id=development.pk).count()
    error = _error(api(org_admin).patch(detail(development, "policy/"), payload, format="json"), 400)
    assert field in error["fields"], error
    assert RuntimePolicy.history.filter(environment_id=development.pk).count() == history_before
    policy = RuntimePolicy.objects.get(environment=development)
    assert (policy.max_rows, policy.sample_percent, policy.log_level, policy.locked) == (None, None, "DEBUG", False)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"kind": "recurring", "cron": "every day", "duration_minutes": 5, "reason": "r"}, "cron"),
        (
            {
                "kind": "recurring",
                "cron": "0 1 * * *",
                "duration_minutes": 5,
                "timezone": "Nowhere/City",
                "reason": "r",
            },
            "timezone",
        ),
        (
            {"kind": "one_off", "starts_at": "2025-01-02T00:00:00Z", "ends_at": "2025-01-01T00:00:00Z", "reason": "r"},
            "ends_at",
        ),
        ({"kind": "one_off", "starts_at": "tomorrow", "ends_at": "2025-01-01T00:00:00Z", "reason": "r"}, "starts_at"),
        ({"kind": "recurring", "cron": "0 1 * * *", "duration_minutes": 5}, "reason"),
    ],
)
def test_freeze_window_refuses_bad_input(api, org_admin, stages, payload, field):
    error = _error(api(org_admin).post(detail(stages["production"], "freeze-windows/"), payload, format="json"), 400)
    assert field in error["fields"], error
    assert not FreezeWindow.objects.exists()


def test_oversize_body_is_a_400(api, org_admin, stages, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    error = _error(
        api(org_admin).post(LIST, {"organization": "acme", "name": "Qa", "description": "x" * 2000}, format="json"), 400
    )
    assert error["code"] in ("bad_request", "validation_error")
    assert not Environment.objects.filter(name="Qa").exists()


# --- limits and editions through the API --------------------------------------------------------


def test_limit_refused(api, org, org_admin, stages):
    client = api(org_admin)
    for name in ("Qa", "Uat"):
        assert client.post(LIST, {"organization": "acme", "name": name}, format="json").status_code == 201
    error = _error(client.post(LIST, {"organization": "acme", "name": "Sixth"}, format="json"), 400)
    assert error["code"] == "limit_reached" and "name" in error["fields"]
    assert Environment.objects.filter(organization=org).count() == 5


def test_standard_edition_refused_naming_the_edition(api, standard_org, standard_owner):
    client = api(standard_owner)
    error = _error(client.post(LIST, {"organization": "small", "name": "Staging"}, format="json"), 403)
    assert error["code"] == "edition_required" and "enterprise edition" in error["message"]
    implicit = Environment.objects.get(organization=standard_org)
    error = _error(client.patch(detail(implicit), {"name": "Prod"}, format="json"), 403)
    assert "edition" in error["message"]
    assert Environment.objects.get(pk=implicit.pk).name == "Default"
    assert Environment.objects.filter(organization=standard_org).count() == 1


# --- permissions ------------------------------------------------------------------------------


def test_developer_cannot_create(api, members, stages):
    error = _error(
        api(members["developer"]).post(LIST, {"organization": "acme", "name": "Prod2", "kind": "production"}), 403
    )
    assert error["code"] == "permission_denied"
    assert not Environment.objects.filter(name="Prod2").exists()


def test_developer_cannot_patch_production(api, org_admin, members, stages):
    developer = members["developer"]
    production = stages["production"]
    # Without view the environment is invisible (404); with view but without manage it is a 403.
    _error(api(developer).patch(detail(production), {"description": "mine"}, format="json"), 404)
    services.permission_grant(actor=org_admin, environment=production, codename=perms.VIEW, user=developer)
    error = _error(api(developer).patch(detail(production), {"description": "mine"}, format="json"), 403)
    assert "manage_environment" in error["message"]
    _error(api(developer).patch(detail(production, "policy/"), {"max_rows": 1}, format="json"), 403)
    assert Environment.objects.get(pk=production.pk).description == ""


def test_developer_cannot_change_their_development_environment_itself(api, members, stages):
    _error(api(members["developer"]).patch(detail(stages["development"]), {"name": "Mine"}, format="json"), 403)
    response = api(members["developer"]).patch(detail(stages["development"], "policy/"), {"max_rows": 9}, format="json")
    assert response.status_code == 200  # change_environment_config on an unlocked policy


def test_outsider_gets_404(api, outsider, stages):
    client = api(outsider)
    _error(client.get(detail(stages["development"])), 404)
    _error(client.patch(detail(stages["development"]), {"description": "x"}, format="json"), 404)
    _error(client.get(detail(stages["development"], "policy/")), 404)
    _error(client.delete(detail(stages["staging"])), 404)


def test_anonymous_is_refused(api, stages):
    assert api().get(LIST).status_code in (401, 403)


def test_locked_policy_through_the_api(api, org_admin, members, stages):
    approver = members["prod_approver"]
    services.permission_grant(
        actor=org_admin, environment=stages["production"], codename=perms.CHANGE_CONFIG, user=approver
    )
    error = _error(api(approver).patch(detail(stages["production"], "policy/"), {"max_rows": 1}, format="json"), 403)
    assert error["code"] == "environment_locked"
    assert RuntimePolicy.objects.get(environment=stages["production"]).max_rows is None


def test_api_keys(api, org, org_admin, members, stages, run_key):
    _key, token = run_key
    # run scope: no reading, not even development.
    _error(api(token=token).get(LIST), 403)
    _key, read_token = tenancy_services.api_key_create(
        actor=members["developer"], organization=org, name="r", scopes=["read"]
    )
    assert [e["slug"] for e in api(token=read_token).get(LIST).json()["results"]] == ["development"]
    _error(api(token=read_token).patch(detail(stages["development"], "policy/"), {"max_rows": 1}, format="json"), 403)
    # An owner's write key reads and edits policies everywhere, but cannot create environments.
    _key, write_token = tenancy_services.api_key_create(actor=org_admin, organization=org, name="w", scopes=["write"])
    assert len(api(token=write_token).get(LIST).json()["results"]) == 3
    response = api(token=write_token).patch(detail(stages["staging"], "policy/"), {"max_rows": 7}, format="json")
    assert response.status_code == 200, response.content
    assert RuntimePolicy.history.filter(environment_id=stages["staging"].pk).first().history_user == org_admin
    _error(api(token=write_token).post(LIST, {"organization": "acme", "name": "Qa"}, format="json"), 403)


def test_key_of_another_organization_reaches_nothing_here(api, org_admin, members, stages, other_org, other_owner):
    developer = members["developer"]
    tenancy_services.membership_add(actor=other_owner, organization=other_org, user=developer, role=Role.ADMIN)
    _key, token = tenancy_services.api_key_create(actor=developer, organization=other_org, name="g", scopes=["admin"])
    assert api(token=token).get(LIST).json()["results"] == []
    _error(api(token=token).get(detail(stages["development"])), 404)


# --- query counts -----------------------------------------------------------------------------


def _list_queries(client):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(LIST)
    assert response.status_code == 200
    return len(queries), len(response.json()["results"])


def _add_environments(org, org_admin, count):
    from apps.notifications.services import channel_create

    channel, _ = channel_create(
        actor=org_admin, organization=org, name=f"c{count}", kind="email", target="a@example.com"
    )
    for index in range(count):
        environment = services.environment_create(
            actor=org_admin, organization=org, name=f"Extra {count} {index}", kind=Kind.DEVELOPMENT
        )
        services.runtime_policy_update(actor=org_admin, environment=environment, notification_channels=[channel])
        services.freeze_window_create(
            actor=org_admin, environment=environment, kind="recurring", cron="0 1 * * *", duration_minutes=5, reason="r"
        )


@pytest.mark.parametrize("persona", ["org_admin", "developer"])
def test_list_query_count_does_not_grow(api, platform_staff, org, org_admin, members, stages, persona):
    tenancy_services.organization_update(actor=platform_staff, organization=org, max_environments=20)
    user = org_admin if persona == "org_admin" else members["developer"]
    _add_environments(org, org_admin, 0)
    small_queries, small_count = _list_queries(api(fresh(user)))
    _add_environments(org, org_admin, 7)
    large_queries, large_count = _list_queries(api(fresh(user)))
    assert large_count == small_count + 7
    assert large_queries == small_queries
    assert large_queries <= 15


# --- permissions action -----------------------------------------------------------------------


def test_permissions_action_grant_and_revoke(api, org_admin, members, stages):
    client = api(org_admin)
    url = detail(stages["staging"], "permissions/")
    response = client.post(url, {"codename": "run_in_environment", "username": "dev"}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["users"]["dev"] == ["run_in_environment"]
    assert perms.may(fresh(members["developer"]), perms.RUN, stages["staging"])
    row = EnvironmentUserObjectPermission.history.filter(user=members["developer"]).first()
    assert row.history_user == org_admin and row.history_type == "+"
    response = client.delete(url, {"codename": "run_in_environment", "username": "dev"}, format="json")
    assert response.status_code == 200
    assert "dev" not in response.json()["users"]
    assert not perms.may(fresh(members["developer"]), perms.RUN, stages["staging"])
    assert EnvironmentUserObjectPermission.history.filter(user=members["developer"]).first().history_type == "-"


def test_permissions_action_needs_manage(api, org_admin, members, stages, outsider):
    developer = api(members["developer"])
    url = detail(stages["development"], "permissions/")
    _error(developer.get(url), 403)
    _error(developer.post(url, {"codename": "manage_environment", "username": "dev"}, format="json"), 403)
    assert not perms.may(fresh(members["developer"]), perms.MANAGE, stages["development"])
    error = _error(
        api(org_admin).post(url, {"codename": "view_environment", "username": "outsider"}, format="json"), 400
    )
    assert "username" in error["fields"]
    error = _error(api(org_admin).post(url, {"codename": "fly", "username": "dev"}, format="json"), 400)
    assert "codename" in error["fields"]


@pytest.mark.parametrize("method", ["post", "delete"])
def test_permissions_action_answers_unknown_and_foreign_users_alike(
    api, org_admin, stages, other_org, other_owner, method
):
    """A user of another organization and a user that does not exist get the same 400 (the same
    body but for the name): the grant endpoint is no oracle of which usernames exist."""
    client = api(org_admin)
    url = detail(stages["staging"], "permissions/")
    answers = {}
    outsider = other_owner  # the owner of another organization
    for username in (outsider.username, "nobody-by-this-name"):
        response = getattr(client, method)(url, {"codename": "view_environment", "username": username}, format="json")
        assert response.status_code == 400, response.content
        answers[username] = response.json()["error"]
    foreign, unknown = answers[outsider.username], answers["nobody-by-this-name"]
    assert foreign["code"] == unknown["code"]
    assert list(foreign["fields"]) == list(unknown["fields"]) == ["username"]
    assert foreign["message"].replace(outsider.username, "X") == unknown["message"].replace("nobody-by-this-name", "X")
    assert not EnvironmentUserObjectPermission.objects.filter(user=outsider).exists()
