"""Connections API: roles and bindings (happy paths, bad input, permissions, ETag, query counts)."""

import pytest

from apps.connections import services
from apps.connections.models import ConnectionBinding, ConnectionRole, ConnectionTest
from apps.environments import permissions as perms

from .conftest import grant

pytestmark = pytest.mark.django_db

ROLES = "/api/v1/connection-roles/"
BINDINGS = "/api/v1/connection-bindings/"


def fields_of(response) -> dict:
    body = response.json()
    assert set(body) == {"error"}, body
    return body["error"].get("fields", {})


def test_role_and_binding_happy_path(org, org_admin, stages, api, canary_secret):
    client = api(org_admin)
    created = client.post(ROLES, {"organization": "acme", "name": "warehouse", "kind": "postgres"}, format="json")
    assert created.status_code == 201, created.content
    role_id = created.json()["id"]
    bound = client.post(
        BINDINGS,
        {
            "role": role_id,
            "environment": "production",
            "params": {"host": "db.prod", "port": 5432, "database": "{{ db_schema }}"},
            "credential": "warehouse_password",
        },
        format="json",
    )
    assert bound.status_code == 201, bound.content
    body = bound.json()
    assert body["credential"].endswith("warehouse_password") and body["environment"] == "production"
    assert "CANARY" not in bound.content.decode()
    listed = client.get(BINDINGS, {"environment": "production"}).json()["results"]
    assert [b["id"] for b in listed] == [body["id"]]
    patched = client.patch(f"{BINDINGS}{body['id']}/", {"params": {"host": "db2", "database": "d"}}, format="json")
    assert patched.status_code == 200 and patched.json()["credential"] == body["credential"]
    assert client.delete(f"{BINDINGS}{body['id']}/").status_code == 204
    assert client.delete(f"{ROLES}{role_id}/").status_code == 204
    assert not ConnectionRole.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"params": {"host": "h", "database": "d", "password": "hunter2"}}, "params.password"),
        ({"params": {"host": "h", "database": "d", "bogus": 1}}, "params.bogus"),
        ({"params": {"host": "h", "database": "d", "port": "5432"}}, "params.port"),
        ({"params": {"host": "h\x00", "database": "d"}}, "params"),
        ({"params": {"host": "h", "database": "d"}, "credential": "dev_token"}, "credential"),
        ({"params": {"host": "h", "database": "d"}, "credential": "nope"}, "credential"),
        ({"params": ["host"]}, "params"),
        ({"params": {"host": "h", "database": "d"}, "extra": True}, "extra"),
        ({"params": {"host": "h", "database": "d"}, "environment": "moon"}, "environment"),
    ],
)
def test_binding_bad_input(org, org_admin, stages, api, dev_secret, payload, field):
    warehouse = services.connection_role_create(actor=org_admin, organization=org, name="warehouse", kind="postgres")
    body = {"role": warehouse.pk, "environment": "production", **payload}
    response = api(org_admin).post(BINDINGS, body, format="json")
    assert response.status_code == 400, response.content
    assert any(name == field or name.startswith(f"{field}.") for name in fields_of(response)), response.json()
    assert "hunter2" not in response.content.decode()
    assert not ConnectionBinding.objects.exists()


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "Ware House", "kind": "postgres"}, "name"),
        ({"name": "warehouse", "kind": "oracle"}, "kind"),
        ({"name": "warehouse", "kind": "postgres", "required_in": "production"}, "required_in"),
        ({"name": "warehouse", "kind": "postgres", "secret": "x"}, "secret"),
        ({"name": "ware\x00house", "kind": "postgres"}, "name"),
        ({"name": "warehouse", "kind": "postgres", "description": "d" * 4001}, "description"),
    ],
)
def test_role_bad_input(org, org_admin, stages, api, payload, field):
    response = api(org_admin).post(ROLES, {"organization": "acme", **payload}, format="json")
    assert response.status_code == 400, response.content
    assert field in fields_of(response)
    assert not ConnectionRole.objects.exists()


def test_kind_change_of_a_bound_role_is_refused(org_admin, api, configured):
    role = ConnectionRole.objects.get(name="reporting_db")
    response = api(org_admin).patch(f"{ROLES}{role.pk}/", {"kind": "postgres"}, format="json")
    assert response.status_code == 400 and "kind" in fields_of(response)
    assert ConnectionRole.objects.get(pk=role.pk).kind == "sqlite"


def test_locked_production_refuses_without_manage(org, org_admin, stages, members, api, configured):
    binding = ConnectionBinding.objects.get(role__name="reporting_db", environment=stages["production"])
    approver = grant(org_admin, stages["production"], members["prod_approver"], perms.CHANGE_CONFIG)
    client = api(approver)
    response = client.patch(f"{BINDINGS}{binding.pk}/", {"params": {"path": "other.sqlite3"}}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "environment_locked"
    assert api(members["developer"]).delete(f"{BINDINGS}{binding.pk}/").status_code == 404
    assert ConnectionBinding.objects.get(pk=binding.pk).params == binding.params


def test_outsider_sees_nothing(org_admin, api, outsider, configured):
    client = api(outsider)
    assert client.get(ROLES).json()["results"] == []
    assert client.get(BINDINGS).json()["results"] == []
    binding = ConnectionBinding.objects.first()
    assert client.get(f"{BINDINGS}{binding.pk}/").status_code == 404
    assert client.post(f"{BINDINGS}{binding.pk}/test/").status_code == 404
    assert client.get(f"{ROLES}{binding.role_id}/").status_code == 404
    assert not ConnectionTest.objects.exists()


def test_test_action_queues_and_lists(org_admin, stages, api, configured, members):
    binding = ConnectionBinding.objects.get(role__name="reporting_db", environment=stages["development"])
    client = api(org_admin)
    queued = client.post(f"{BINDINGS}{binding.pk}/test/")
    assert queued.status_code == 202 and queued.json()["status"] == "queued"
    assert [t["id"] for t in client.get(f"{BINDINGS}{binding.pk}/tests/").json()] == [queued.json()["id"]]
    production = ConnectionBinding.objects.get(role__name="reporting_db", environment=stages["production"])
    # The staging approver cannot see production; the production approver sees it but may not test it.
    assert api(members["staging_approver"]).post(f"{BINDINGS}{production.pk}/test/").status_code == 404
    assert api(members["prod_approver"]).post(f"{BINDINGS}{production.pk}/test/").status_code == 403


def test_etag_if_match(org_admin, stages, api, configured):
    binding = ConnectionBinding.objects.get(role__name="reporting_db", environment=stages["staging"])
    client = api(org_admin)
    etag = client.get(f"{BINDINGS}{binding.pk}/")["ETag"]
    ok = client.patch(f"{BINDINGS}{binding.pk}/", {"params": {"path": "a.sqlite3"}}, format="json", HTTP_IF_MATCH=etag)
    assert ok.status_code == 200
    stale = client.patch(
        f"{BINDINGS}{binding.pk}/", {"params": {"path": "b.sqlite3"}}, format="json", HTTP_IF_MATCH=etag
    )
    assert stale.status_code == 412
    assert ConnectionBinding.objects.get(pk=binding.pk).params == {"path": "a.sqlite3"}
    role = binding.role
    role_etag = client.get(f"{ROLES}{role.pk}/")["ETag"]
    assert (
        client.patch(f"{ROLES}{role.pk}/", {"description": "x"}, format="json", HTTP_IF_MATCH=role_etag).status_code
        == 200
    )
    assert (
        client.patch(f"{ROLES}{role.pk}/", {"description": "y"}, format="json", HTTP_IF_MATCH=role_etag).status_code
        == 412
    )
    assert ConnectionRole.objects.get(pk=role.pk).description == "x"


@pytest.mark.parametrize("count", [2, 15])
def test_list_query_counts_are_bounded(
    org, org_admin, stages, api, members, canary_secret, django_assert_max_num_queries, count
):
    for index in range(count):
        role = services.connection_role_create(actor=org_admin, organization=org, name=f"role_{index}", kind="sqlite")
        for slug, environment in stages.items():
            services.connection_binding_set(
                actor=org_admin,
                role=role,
                environment=environment,
                params={"path": f"{index}.sqlite3"},
                credential=canary_secret if slug != "development" else None,
            )
    for user in (org_admin, members["developer"]):
        client = api(user)
        with django_assert_max_num_queries(12):
            assert client.get(ROLES).status_code == 200
        with django_assert_max_num_queries(12):
            response = client.get(BINDINGS, {"page_size": 100})
        assert response.status_code == 200
    assert len(api(org_admin).get(BINDINGS, {"page_size": 100}).json()["results"]) == count * 3
