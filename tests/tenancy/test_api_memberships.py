"""Memberships API: adding, changing roles, removing; owner rules; development-only defaults."""

import threading

import pytest
from django.db import connection

from apps.environments import permissions as perms
from apps.environments.models import EnvironmentUserObjectPermission
from apps.tenancy import services
from apps.tenancy.models import ApiKey, Membership, Role
from tests import postgres as pg

from .conftest import assert_error

LIST = "/api/v1/memberships/"


def detail(membership):
    return f"/api/v1/memberships/{membership.pk}/"


def membership_of(user, org):
    return Membership.objects.get(user=user, organization=org)


def test_owner_adds_a_member(api, org, org_admin, outsider, members):
    response = api(org_admin).post(LIST, {"organization": "acme", "username": "outsider"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["role"] == Role.MEMBER
    assert body["organization"] == "acme"
    assert body["user"]["username"] == "outsider"
    assert membership_of(outsider, org).role == Role.MEMBER


def test_new_member_gets_development_permissions_only(api, org, org_admin, outsider, stages, members):
    assert api(org_admin).post(LIST, {"organization": "acme", "username": "outsider"}).status_code == 201
    outsider.refresh_from_db()
    for codename in perms.CODENAMES:
        expected = codename in perms.DEVELOPMENT_DEFAULTS
        assert perms.may(outsider, codename, stages["development"]) is expected, codename
        assert not perms.may(outsider, codename, stages["staging"]), codename
        assert not perms.may(outsider, codename, stages["production"]), codename


def test_change_role(api, org, org_admin, members):
    membership = membership_of(members["developer"], org)
    response = api(org_admin).patch(detail(membership), {"role": "admin"})
    assert response.status_code == 200, response.content
    assert response.json()["role"] == Role.ADMIN
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN


def test_remove_member_revokes_environment_grants_and_api_keys(api, org, org_admin, members, stages, make_key):
    developer = members["developer"]
    key, token = make_key(developer, ["read"])
    assert EnvironmentUserObjectPermission.objects.filter(user=developer).exists()
    key_history_before = ApiKey.history.filter(id=key.pk).count()

    response = api(org_admin).delete(detail(membership_of(developer, org)))
    assert response.status_code == 204, response.content

    assert not Membership.objects.filter(user=developer, organization=org).exists()
    assert not EnvironmentUserObjectPermission.objects.filter(user=developer, content_object__organization=org).exists()
    developer.refresh_from_db()
    assert not perms.may(developer, perms.VIEW, stages["development"])
    key.refresh_from_db()
    assert key.revoked_at is not None
    # The revocation is an audited change like any other.
    latest = ApiKey.history.filter(id=key.pk).latest("history_date")
    assert ApiKey.history.filter(id=key.pk).count() == key_history_before + 1
    assert latest.revoked_at is not None
    assert latest.history_user == org_admin
    assert_error(api(token=token).get("/api/v1/organizations/"), 401)


def test_member_leaves_by_themselves(api, org, members):
    developer = members["developer"]
    assert api(developer).delete(detail(membership_of(developer, org))).status_code == 204
    assert not Membership.objects.filter(user=developer, organization=org).exists()


def test_last_owner_cannot_be_removed_or_demoted(api, org, org_admin, members):
    own = membership_of(org_admin, org)
    assert_error(api(org_admin).delete(detail(own)), 409, code="conflict")
    assert_error(api(org_admin).patch(detail(own), {"role": "member"}), 409, field="role")
    own.refresh_from_db()
    assert own.role == Role.OWNER


def test_an_owner_may_leave_when_another_owner_remains(api, org, org_admin, members):
    developer = members["developer"]
    assert api(org_admin).patch(detail(membership_of(developer, org)), {"role": "owner"}).status_code == 200
    assert api(org_admin).delete(detail(membership_of(org_admin, org))).status_code == 204
    assert list(Membership.objects.filter(organization=org, role=Role.OWNER).values_list("user", flat=True)) == [
        developer.pk
    ]


def test_only_owners_grant_owner(api, org, plain_admin, members, outsider):
    client = api(plain_admin)
    assert_error(client.post(LIST, {"organization": "acme", "username": "outsider", "role": "owner"}), 403)
    assert not Membership.objects.filter(user=outsider).exists()
    developer_membership = membership_of(members["developer"], org)
    assert_error(client.patch(detail(developer_membership), {"role": "owner"}), 403, field="role")
    developer_membership.refresh_from_db()
    assert developer_membership.role == Role.MEMBER
    # Admins may still add plain members and admins.
    assert client.post(LIST, {"organization": "acme", "username": "outsider", "role": "admin"}).status_code == 201


def test_admin_cannot_remove_an_owner(api, org, org_admin, plain_admin):
    assert_error(api(plain_admin).delete(detail(membership_of(org_admin, org))), 403)
    assert Membership.objects.filter(user=org_admin, organization=org).exists()


def test_plain_member_cannot_add_change_or_remove(api, org, members, outsider):
    client = api(members["developer"])
    assert_error(client.post(LIST, {"organization": "acme", "username": "outsider"}), 403)
    other = membership_of(members["prod_approver"], org)
    assert_error(client.patch(detail(other), {"role": "admin"}), 403)
    assert_error(client.delete(detail(other)), 403)
    other.refresh_from_db()
    assert other.role == Role.MEMBER
    assert not Membership.objects.filter(user=outsider).exists()


def test_outsider_neither_sees_nor_touches_memberships(api, org, org_admin, outsider, members):
    client = api(outsider)
    assert client.get(LIST).json()["results"] == []
    own = membership_of(org_admin, org)
    assert_error(client.get(detail(own)), 404)
    assert_error(client.delete(detail(own)), 404)


def test_outsider_cannot_probe_organization_slugs(api, org, other_org, outsider):
    """An organization you do not belong to answers exactly like one that does not exist."""
    client = api(outsider)
    existing = client.post(LIST, {"organization": "acme", "username": "outsider"})
    missing = client.post(LIST, {"organization": "no-such-org", "username": "outsider"})
    assert existing.status_code == missing.status_code == 400
    assert existing.json()["error"]["fields"].keys() == missing.json()["error"]["fields"].keys() == {"organization"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"organization": "acme", "username": "nobody"}, "username"),
        ({"organization": "acme", "username": "outsider", "role": "emperor"}, "role"),
        ({"organization": "acme", "username": "outsider", "extra": 1}, "extra"),
        ({"organization": "acme", "username": "outs\x00ider"}, "username"),
        ({"organization": "acme"}, "username"),
        ({"organization": ["acme"], "username": "outsider"}, "organization"),
    ],
)
def test_add_bad_input(api, org, org_admin, outsider, payload, field):
    before = Membership.objects.count()
    assert_error(api(org_admin).post(LIST, payload), 400, field=field)
    assert Membership.objects.count() == before


def test_adding_an_existing_member_is_a_conflict(api, org, org_admin, members):
    assert_error(api(org_admin).post(LIST, {"organization": "acme", "username": "dev"}), 409, field="user")


def test_change_role_bad_input(api, org, org_admin, members):
    membership = membership_of(members["developer"], org)
    assert_error(api(org_admin).patch(detail(membership), {"role": "emperor"}), 400, field="role")
    assert_error(api(org_admin).patch(detail(membership), {"user": "outsider"}), 400, field="user")
    assert_error(api(org_admin).put(detail(membership), {"role": "admin"}), 405)
    membership.refresh_from_db()
    assert membership.role == Role.MEMBER


def test_run_key_cannot_create_memberships(api, org, run_key, outsider):
    _, token = run_key
    error = assert_error(api(token=token).post(LIST, {"organization": "acme", "username": "outsider"}), 403)
    assert "'admin'" in error["message"]
    assert not Membership.objects.filter(user=outsider).exists()


def test_list_query_count_is_bounded(api, org, org_admin, members, django_assert_max_num_queries):
    from django.contrib.auth import get_user_model

    for index in range(10):
        user = get_user_model().objects.create_user(f"extra{index}")
        services.membership_add(actor=org_admin, organization=org, user=user)
    client = api(org_admin)
    with django_assert_max_num_queries(6):
        response = client.get(LIST)
    assert response.status_code == 200
    assert response.json()["count"] == 14


@pytest.mark.django_db(transaction=True)
def test_two_owners_demoting_each_other_leave_one_owner(platform_staff, developer, org_admin):
    pg.require_test_database(connection, "race tests need PostgreSQL's row locks (SQLite serializes every write)")
    org = services.organization_create(actor=platform_staff, name="Racy", owner=org_admin)
    services.membership_add(actor=org_admin, organization=org, user=developer, role=Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes = []

    def demote(actor, target):
        from django.contrib.auth import get_user_model
        from django.db import connection as thread_connection

        from apps.core.errors import DomainError

        try:
            actor = get_user_model().objects.get(pk=actor.pk)
            membership = Membership.objects.get(user=target, organization=org)
            barrier.wait(timeout=10)
            services.membership_change_role(actor=actor, membership=membership, role=Role.MEMBER)
            outcomes.append("demoted")
        except DomainError as exc:
            outcomes.append(type(exc).__name__)
        finally:
            thread_connection.close()

    threads = [
        threading.Thread(target=demote, args=(org_admin, developer)),
        threading.Thread(target=demote, args=(developer, org_admin)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert Membership.objects.filter(organization=org, role=Role.OWNER).count() >= 1
    assert len(outcomes) == 2
    assert outcomes.count("demoted") == 1, outcomes
