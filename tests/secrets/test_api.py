"""Secrets API: write-only values, admin-only writes, one error shape, 409 while referenced, ETag."""

import pytest

from apps.secrets.models import Secret
from apps.variables import services as variable_services
from tests.tenancy.conftest import assert_error

from .conftest import CANARY

pytestmark = pytest.mark.django_db


def test_create_rotate_list_never_return_the_value(api, org_admin, stages, members):
    client = api(org_admin)
    created = client.post(
        "/api/v1/secrets/",
        {"organization": "acme", "name": "api_pw", "value": CANARY, "allowed_environments": ["production"]},
        format="json",
    )
    assert created.status_code == 201, created.content
    body = created.json()
    assert "value" not in body and "ciphertext" not in body and CANARY not in created.content.decode()
    assert body["allowed_environments"] == ["production"] and body["fingerprint"].startswith("sha256:")
    assert body["reference_uri"] == "secret://api_pw"
    detail = client.get(f"/api/v1/secrets/{body['id']}/")
    rotated = client.patch(
        f"/api/v1/secrets/{body['id']}/", {"value": CANARY + "-2"}, format="json", HTTP_IF_MATCH=detail["ETag"]
    )
    assert rotated.status_code == 200, rotated.content
    assert rotated.json()["fingerprint"] != body["fingerprint"] and rotated.json()["rotated_at"]
    stale = client.patch(
        f"/api/v1/secrets/{body['id']}/", {"description": "x"}, format="json", HTTP_IF_MATCH=detail["ETag"]
    )
    assert_error(stale, 412)
    member_view = api(members["developer"]).get("/api/v1/secrets/").json()
    assert [s["name"] for s in member_view["results"]] == ["api_pw"]
    for response in (created, detail, rotated, client.get("/api/v1/secrets/"), stale):
        assert CANARY not in response.content.decode()


def test_bad_input_is_400_and_writes_nothing(api, org_admin, stages):
    client = api(org_admin)
    cases = [
        ({"organization": "acme", "name": "Bad Name", "value": "v"}, "name"),
        ({"organization": "acme", "name": "ok", "value": "v", "provider": "nope"}, "provider"),
        (
            {"organization": "acme", "name": "ok", "value": "v", "allowed_environments": ["nowhere"]},
            "allowed_environments",
        ),
        ({"organization": "acme", "name": "ok"}, "value"),
        ({"organization": "acme", "name": "ok", "value": 5}, "value"),
        ({"organization": "acme", "name": "ok", "value": "v", "colour": "red"}, "colour"),
        ({"organization": "acme", "name": "ok", "provider": "env", "reference": "not valid"}, "reference"),
    ]
    for payload, field in cases:
        assert_error(client.post("/api/v1/secrets/", payload, format="json"), 400, field=field)
    assert not Secret.objects.exists()


def test_permissions(api, org_admin, members, outsider, canary_secret):
    developer = api(members["developer"])
    assert_error(
        developer.post("/api/v1/secrets/", {"organization": "acme", "name": "dev_pw", "value": "v"}, format="json"),
        403,
    )
    assert_error(developer.patch(f"/api/v1/secrets/{canary_secret.pk}/", {"value": "stolen"}, format="json"), 403)
    assert_error(developer.delete(f"/api/v1/secrets/{canary_secret.pk}/"), 403)
    assert_error(api(outsider).get(f"/api/v1/secrets/{canary_secret.pk}/"), 404)
    assert api(outsider).get("/api/v1/secrets/").json()["results"] == []
    anonymous = api().get("/api/v1/secrets/")
    assert_error(anonymous, anonymous.status_code)
    assert anonymous.status_code in (401, 403)
    canary_secret.refresh_from_db()
    assert canary_secret.rotated_at is None


def test_delete_referenced_is_409_then_204(api, org, org_admin, canary_secret, stages):
    variable = variable_services.variable_create(
        actor=org_admin, organization=org, name="warehouse_pw", type="secret", default_value=None
    )
    override = variable_services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["staging"], secret=canary_secret
    )
    client = api(org_admin)
    error = assert_error(client.delete(f"/api/v1/secrets/{canary_secret.pk}/"), 409, code="conflict")
    assert "warehouse_pw" in error["message"]
    assert Secret.objects.filter(pk=canary_secret.pk).exists()
    variable_services.variable_override_delete(actor=org_admin, override=override)
    assert client.delete(f"/api/v1/secrets/{canary_secret.pk}/").status_code == 204
    assert not Secret.objects.filter(pk=canary_secret.pk).exists()


def test_list_query_count_is_bounded(api, org, org_admin, stages, make_secret, django_assert_max_num_queries):
    for index in range(8):
        make_secret(name=f"s{index}", allowed_environments=[stages["staging"], stages["production"]])
    client = api(org_admin)
    with django_assert_max_num_queries(12):
        response = client.get("/api/v1/secrets/")
    assert response.json()["count"] == 8
