"""Variables API: happy paths, bad input (400 naming the field, nothing written), permissions,
ETag/If-Match and query-count guards."""

import json

import pytest

from apps.environments import permissions as perms
from apps.variables import services
from apps.variables.models import Variable, VariableOverride

from .conftest import grant

pytestmark = pytest.mark.django_db

VARIABLES = "/api/v1/variables/"
OVERRIDES = "/api/v1/variable-overrides/"


def fields_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"].get("fields", {})


def test_create_list_retrieve_update_delete(org, org_admin, stages, api):
    client = api(org_admin)
    created = client.post(
        VARIABLES,
        {"organization": "acme", "name": "batch_size", "type": "integer", "default_value": 500, "min_value": 1},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert body["scope"] == "organization" and body["default_value"] == 500 and body["organization"] == "acme"
    listed = client.get(VARIABLES, {"organization": "acme"}).json()
    assert [v["name"] for v in listed["results"]] == ["batch_size"]
    detail = client.get(f"{VARIABLES}{body['id']}/")
    assert detail.status_code == 200 and detail["ETag"]
    patched = client.patch(f"{VARIABLES}{body['id']}/", {"default_value": 250}, format="json")
    assert patched.status_code == 200 and patched.json()["default_value"] == 250
    assert client.delete(f"{VARIABLES}{body['id']}/").status_code == 204
    assert not Variable.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "batch_size", "type": "integer", "default_value": 5, "colour": "red"}, "colour"),
        ({"name": "batch\x00size", "type": "integer"}, "name"),
        ({"name": "batch_size", "type": "string", "default_value": "a\x00b"}, "default_value"),
        ({"name": "batch_size", "type": "string", "default_value": "x" * 10_001}, "default_value"),
        ({"name": "batch_size", "type": "string", "description": "d" * 4001}, "description"),
        ({"name": "batch_size", "type": "integer", "default_value": "5"}, "default_value"),
        ({"name": "batch_size", "type": "boolean", "default_value": "yes"}, "default_value"),
        ({"name": "batch_size", "type": "integer", "min_value": "1"}, "min_value"),
        ({"name": "batch_size", "type": "string", "allow_runtime_override": "true"}, "allow_runtime_override"),
        ({"name": "batch_size", "type": "blob"}, "type"),
        ({"name": "Batch-Size", "type": "string"}, "name"),
        ({"name": "_private", "type": "string"}, "name"),
        ({"name": 42, "type": "string"}, "name"),
        ({"name": "batch_size", "type": "string", "required_in": ["moon"]}, "required_in"),
        ({"name": "batch_size", "type": "secret", "default_secret": "no_such_secret"}, "default_secret"),
        ({"name": "db_password", "type": "string", "default_value": "hunter2"}, "default_value"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(org, org_admin, stages, api, payload, field):
    response = api(org_admin).post(VARIABLES, {"organization": "acme", **payload}, format="json")
    assert response.status_code == 400, response.content
    assert any(name == field or name.startswith(f"{field}.") for name in fields_of(response)), response.json()
    assert not Variable.objects.exists()


def test_plaintext_credential_message_points_at_secret_references(org, org_admin, stages, api):
    variable = services.variable_create(actor=org_admin, organization=org, name="api_token", type="string")
    response = api(org_admin).post(
        OVERRIDES, {"variable": variable.pk, "environment": "production", "value": "tok-123"}, format="json"
    )
    assert response.status_code == 400
    assert "secret reference" in fields_of(response)["value"][0]
    assert "tok-123" not in response.content.decode()
    ok = api(org_admin).post(
        OVERRIDES, {"variable": variable.pk, "environment": "development", "value": "tok-123"}, format="json"
    )
    assert ok.status_code == 201, ok.content


def test_override_create_set_twice_is_an_update(org, org_admin, stages, api):
    variable = services.variable_create(actor=org_admin, organization=org, name="db_schema", type="string")
    client = api(org_admin)
    first = client.post(OVERRIDES, {"variable": variable.pk, "environment": "staging", "value": "a"}, format="json")
    second = client.post(OVERRIDES, {"variable": variable.pk, "environment": "staging", "value": "b"}, format="json")
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert VariableOverride.objects.get().value == "b"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"environment": "staging", "value": 5}, "value"),
        ({"environment": "staging", "value": "a", "extra": 1}, "extra"),
        ({"environment": "staging", "value": "a\x00"}, "value"),
        ({"environment": "nowhere", "value": "a"}, "environment"),
        ({"environment": "staging", "secret": "warehouse_password"}, "secret"),
        ({"environment": "staging", "value": "z" * 10_001}, "value"),
    ],
)
def test_override_bad_input(org, org_admin, stages, api, canary_secret, payload, field):
    variable = services.variable_create(actor=org_admin, organization=org, name="db_schema", type="string")
    response = api(org_admin).post(OVERRIDES, {"variable": variable.pk, **payload}, format="json")
    assert response.status_code == 400, response.content
    assert field in fields_of(response)
    assert not VariableOverride.objects.exists()


def test_locked_production_refuses_without_manage(org, org_admin, stages, members, api):
    variable = services.variable_create(actor=org_admin, organization=org, name="db_schema", type="string")
    payload = {"variable": variable.pk, "environment": "production", "value": "p"}
    assert api(members["developer"]).post(OVERRIDES, payload, format="json").status_code == 403
    approver = grant(org_admin, stages["production"], members["staging_approver"], perms.VIEW, perms.CHANGE_CONFIG)
    refused = api(approver).post(OVERRIDES, payload, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "environment_locked"
    assert not VariableOverride.objects.exists()
    assert api(org_admin).post(OVERRIDES, payload, format="json").status_code == 201
    override = VariableOverride.objects.get()
    assert api(approver).patch(f"{OVERRIDES}{override.pk}/", {"value": "x"}, format="json").status_code == 403
    assert api(approver).delete(f"{OVERRIDES}{override.pk}/").status_code == 403
    assert VariableOverride.objects.get().value == "p"


def test_developer_sees_development_overrides_only(org, org_admin, stages, members, api, configured):
    developer = members["developer"]
    listed = api(developer).get(OVERRIDES).json()["results"]
    assert {o["environment"] for o in listed} == set()  # db_schema has staging/production overrides only
    services.variable_override_set(
        actor=org_admin, variable=configured, environment=stages["development"], value="dev_x"
    )
    listed = api(developer).get(OVERRIDES).json()["results"]
    assert {o["environment"] for o in listed} == {"development"}
    staging_override = VariableOverride.objects.get(environment=stages["staging"])
    assert api(developer).get(f"{OVERRIDES}{staging_override.pk}/").status_code == 404


def test_outsider_sees_nothing(org, org_admin, stages, api, outsider, configured):
    client = api(outsider)
    assert client.get(VARIABLES).json()["results"] == []
    assert client.get(OVERRIDES).json()["results"] == []
    assert client.get(f"{VARIABLES}{configured.pk}/").status_code == 404
    assert client.patch(f"{VARIABLES}{configured.pk}/", {"description": "x"}, format="json").status_code == 404
    assert client.delete(f"{VARIABLES}{configured.pk}/").status_code == 404
    override = VariableOverride.objects.first()
    assert client.get(f"{OVERRIDES}{override.pk}/").status_code == 404
    response = client.post(
        OVERRIDES, {"variable": configured.pk, "environment": "staging", "value": "x"}, format="json"
    )
    assert response.status_code == 400 and "variable" in fields_of(response)
    assert client.post(
        VARIABLES, {"organization": "acme", "name": "x", "type": "string"}, format="json"
    ).status_code in (
        400,
        403,
        404,
    )
    assert Variable.objects.count() == 1
    assert api().get(VARIABLES).status_code in (401, 403)


def test_secret_values_never_appear(org, org_admin, stages, api, canary_secret):
    variable = services.variable_create(
        actor=org_admin, organization=org, name="warehouse_pw", type="secret", default_secret=canary_secret
    )
    client = api(org_admin)
    created = client.post(
        OVERRIDES,
        {"variable": variable.pk, "environment": "production", "secret": "warehouse_password"},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["secret"].endswith("warehouse_password")
    for response in (created, client.get(VARIABLES), client.get(OVERRIDES), client.get(f"{VARIABLES}{variable.pk}/")):
        assert "CANARY" not in response.content.decode()
    not_allowed = client.post(
        OVERRIDES,
        {"variable": variable.pk, "environment": "development", "secret": "warehouse_password"},
        format="json",
    )
    assert not_allowed.status_code == 400 and "secret" in fields_of(not_allowed)


def test_patch_of_a_secret_override_keeps_the_secret(org, org_admin, stages, api, canary_secret):
    variable = services.variable_create(actor=org_admin, organization=org, name="warehouse_pw", type="secret")
    override = services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["production"], secret=canary_secret
    )
    response = api(org_admin).patch(f"{OVERRIDES}{override.pk}/", {}, format="json")
    assert response.status_code == 200, response.content
    assert VariableOverride.objects.get().secret == canary_secret


def test_etag_if_match_on_variables(org, org_admin, stages, api):
    variable = services.variable_create(actor=org_admin, organization=org, name="db_schema", type="string")
    client = api(org_admin)
    etag = client.get(f"{VARIABLES}{variable.pk}/")["ETag"]
    first = client.patch(f"{VARIABLES}{variable.pk}/", {"description": "one"}, format="json", HTTP_IF_MATCH=etag)
    assert first.status_code == 200 and first["ETag"] != etag
    stale = client.patch(f"{VARIABLES}{variable.pk}/", {"description": "two"}, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412 and stale.json()["error"]["code"] == "precondition_failed"
    assert client.delete(f"{VARIABLES}{variable.pk}/", HTTP_IF_MATCH=etag).status_code == 412
    assert Variable.objects.get().description == "one"
    current = client.get(f"{VARIABLES}{variable.pk}/")["ETag"]
    assert current == first["ETag"]
    assert (
        client.patch(
            f"{VARIABLES}{variable.pk}/", {"description": "two"}, format="json", HTTP_IF_MATCH=current
        ).status_code
        == 200
    )


def test_etag_if_match_on_overrides(org, org_admin, stages, api, configured):
    client = api(org_admin)
    override = VariableOverride.objects.get(environment=stages["staging"])
    etag = client.get(f"{OVERRIDES}{override.pk}/")["ETag"]
    assert (
        client.patch(f"{OVERRIDES}{override.pk}/", {"value": "s2"}, format="json", HTTP_IF_MATCH=etag).status_code
        == 200
    )
    stale = client.patch(f"{OVERRIDES}{override.pk}/", {"value": "s3"}, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert VariableOverride.objects.get(pk=override.pk).value == "s2"


def _make_many(org, org_admin, stages, count):
    for index in range(count):
        variable = services.variable_create(
            actor=org_admin, organization=org, name=f"var_{index}", type="integer", default_value=index
        )
        for environment in stages.values():
            services.variable_override_set(actor=org_admin, variable=variable, environment=environment, value=index)


@pytest.mark.parametrize("count", [2, 20])
def test_list_query_counts_are_bounded(org, org_admin, stages, api, members, django_assert_max_num_queries, count):
    _make_many(org, org_admin, stages, count)
    for user in (org_admin, members["developer"]):
        client = api(user)
        with django_assert_max_num_queries(12):
            assert client.get(VARIABLES).status_code == 200
        with django_assert_max_num_queries(12):
            response = client.get(OVERRIDES, {"page_size": 100})
        assert response.status_code == 200
    assert len(api(org_admin).get(OVERRIDES, {"page_size": 100}).json()["results"]) == count * 3


def test_history_via_the_api_records_the_user(org, org_admin, stages, api, members, project):
    developer = members["developer"]
    response = api(developer).post(
        VARIABLES, {"organization": "acme", "project": project.pk, "name": "db_schema", "type": "string"}, format="json"
    )
    assert response.status_code == 201, response.content
    override = api(developer).post(
        OVERRIDES, {"variable": response.json()["id"], "environment": "development", "value": "d"}, format="json"
    )
    assert override.status_code == 201
    assert Variable.history.get().history_user == developer
    assert VariableOverride.history.get().history_user == developer
    assert json.loads(json.dumps(response.json()))["scope"] == "project"
