"""History records who acted: through the API (session or key) and through services called with actor=."""

from apps.tenancy import services
from apps.tenancy.models import ApiKey, Membership, Organization, Role, ServiceAccount


def latest(model, pk):
    return model.history.filter(id=pk).latest("history_date")


def test_api_change_by_session_records_the_user(api, org, plain_admin):
    response = api(plain_admin).patch(f"/api/v1/organizations/{org.pk}/", {"name": "Acme Corp"})
    assert response.status_code == 200, response.content
    record = latest(Organization, org.pk)
    assert record.name == "Acme Corp"
    assert record.history_user == plain_admin
    assert record.history_type == "~"
    assert "name" in record.history_change_reason


def test_api_membership_add_by_session_records_the_user(api, org, org_admin, outsider):
    response = api(org_admin).post("/api/v1/memberships/", {"organization": "acme", "username": "outsider"})
    assert response.status_code == 201
    record = latest(Membership, response.json()["id"])
    assert (record.history_user, record.history_type, record.role) == (org_admin, "+", Role.MEMBER)


def test_api_change_through_a_key_records_the_key_owner(api, org, org_admin, outsider, make_key):
    _, token = make_key(org_admin, ["admin"])
    response = api(token=token).post("/api/v1/memberships/", {"organization": "acme", "username": "outsider"})
    assert response.status_code == 201, response.content
    assert latest(Membership, response.json()["id"]).history_user == org_admin


def test_api_membership_delete_records_the_user(api, org, org_admin, members):
    membership = Membership.objects.get(user=members["developer"], organization=org)
    assert api(org_admin).delete(f"/api/v1/memberships/{membership.pk}/").status_code == 204
    record = latest(Membership, membership.pk)
    assert (record.history_type, record.history_user) == ("-", org_admin)


def test_service_calls_record_the_actor(org, org_admin, platform_staff, members, outsider):
    created = Organization.history.filter(id=org.pk).earliest("history_date")
    assert (created.history_type, created.history_user) == ("+", platform_staff)
    owner_row = Membership.history.filter(organization_id=org.pk, user_id=org_admin.pk).earliest("history_date")
    assert owner_row.history_user == platform_staff

    membership = services.membership_add(actor=org_admin, organization=org, user=outsider)
    assert latest(Membership, membership.pk).history_user == org_admin
    services.membership_change_role(actor=org_admin, membership=membership, role=Role.ADMIN)
    record = latest(Membership, membership.pk)
    assert (record.role, record.history_user, record.history_change_reason) == (
        Role.ADMIN,
        org_admin,
        "role set to admin",
    )

    services.organization_update(actor=platform_staff, organization=org, max_environments=9)
    assert latest(Organization, org.pk).history_user == platform_staff

    account = services.service_account_create(actor=org_admin, organization=org, name="etl bot")
    assert latest(ServiceAccount, account.pk).history_user == org_admin

    key, _ = services.api_key_create(actor=org_admin, organization=org, name="k", scopes=["read"], owner=account.user)
    assert latest(ApiKey, key.pk).history_user == org_admin
    services.api_key_revoke(actor=org_admin, key=key)
    record = latest(ApiKey, key.pk)
    assert record.revoked_at is not None
    assert record.history_user == org_admin


def test_no_op_update_writes_no_history(org, platform_staff):
    before = Organization.history.filter(id=org.pk).count()
    services.organization_update(actor=platform_staff, organization=org, name="Acme", max_environments=5)
    assert Organization.history.filter(id=org.pk).count() == before
