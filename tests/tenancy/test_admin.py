"""Admin for tenancy: pages load, writes go through the services, rules show as form errors,
non-superuser staff see only the organizations they administer."""

import json
import re

import pytest
from django.contrib import admin as django_admin
from django.contrib.messages import get_messages
from django.test import RequestFactory
from django.urls import reverse

from apps.environments import permissions as perms
from apps.tenancy import services
from apps.tenancy.models import ApiKey, Edition, Membership, Organization, Role, ServiceAccount


def url(model, view, *args):
    return reverse(f"admin:tenancy_{model._meta.model_name}_{view}", args=args)


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.fixture
def admin_client_for(client):
    def make(user):
        client.force_login(user)
        return client

    return make


@pytest.fixture
def key(org, org_admin, service_account):
    return services.api_key_create(
        actor=org_admin, organization=org, name="ci key", scopes=["run"], owner=service_account.user
    )[0]


def _objects(org, org_admin, key, service_account):
    return {
        Organization: org,
        Membership: Membership.objects.get(user=org_admin, organization=org),
        ServiceAccount: service_account,
        ApiKey: key,
    }


@pytest.mark.parametrize("who", ["superuser", "org_admin"])
@pytest.mark.parametrize("model", [Organization, Membership, ServiceAccount, ApiKey])
def test_pages_load(request, admin_client_for, org, org_admin, stages, key, service_account, who, model):
    client = admin_client_for(request.getfixturevalue(who))
    obj = _objects(org, org_admin, key, service_account)[model]
    for page in (
        url(model, "changelist"),
        url(model, "add"),
        url(model, "change", obj.pk),
        url(model, "history", obj.pk),
    ):
        response = client.get(page)
        # Creating organizations is for platform operators, not for every organization admin.
        expected = 403 if (who, model, page) == ("org_admin", Organization, url(Organization, "add")) else 200
        assert response.status_code == expected, (page, response.status_code)
    assert client.get(reverse("admin:index")).status_code == 200


def test_changelist_search_and_filters_load(admin_client_for, org_admin, org, key, members):
    client = admin_client_for(org_admin)
    assert client.get(url(Organization, "changelist"), {"q": "acm", "edition": "enterprise"}).status_code == 200
    assert client.get(url(Membership, "changelist"), {"q": "dev", "role": "member"}).status_code == 200
    assert client.get(url(ApiKey, "changelist"), {"state": "revoked"}).status_code == 200
    assert client.get(url(ServiceAccount, "changelist"), {"q": "ci"}).status_code == 200


def test_staff_see_only_organizations_they_administer(
    admin_client_for, org, other_org, org_admin, other_owner, key, members, make_key
):
    other_membership = Membership.objects.get(user=other_owner, organization=other_org)
    other_key, _ = make_key(other_owner, ["read"], organization=other_org)
    client = admin_client_for(org_admin)

    page = client.get(url(Organization, "changelist")).content.decode()
    assert "Acme" in page and "Globex" not in page
    for model in (Membership, ServiceAccount, ApiKey):
        page = client.get(url(model, "changelist")).content.decode()
        assert "Globex" not in page and "globex" not in page  # neither rows nor filter choices
    assert other_key.prefix not in client.get(url(ApiKey, "changelist")).content.decode()

    for model, obj in [(Organization, other_org), (Membership, other_membership), (ApiKey, other_key)]:
        assert client.get(url(model, "change", obj.pk)).status_code != 200
        assert client.get(url(model, "history", obj.pk)).status_code in (403, 404)

    # The add forms offer only administered organizations.
    for model in (Membership, ServiceAccount, ApiKey):
        form = client.get(url(model, "add")).context["adminform"].form
        assert list(form.fields["organization"].queryset) == [org]


def test_plain_staff_without_organizations_see_no_rows(admin_client_for, platform_staff, org, key):
    client = admin_client_for(platform_staff)
    assert "Acme" not in client.get(url(Organization, "changelist")).content.decode()
    assert client.get(url(Membership, "changelist")).status_code == 403
    assert client.get(url(ApiKey, "changelist")).status_code == 403


def test_organization_add_goes_through_the_service(admin_client_for, platform_staff, stages):
    client = admin_client_for(platform_staff)
    response = client.post(
        url(Organization, "add"),
        {
            "name": "Initech",
            "slug": "initech",
            "edition": Edition.STANDARD,
            "max_environments": 1,
            "environment_name_pattern": r"^[A-Za-z]+$",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content.decode()[:3000]
    created = Organization.objects.get(slug="initech")
    assert Membership.objects.get(organization=created).user == platform_staff
    assert Membership.objects.get(organization=created).role == Role.OWNER
    # The standard edition's implicit environment comes from the service's signal.
    assert created.environments.count() == 1
    assert created.history.get().history_user == platform_staff


def _org_change_data(org, **overrides):
    data = {
        "name": org.name,
        "edition": org.edition,
        "max_environments": org.max_environments,
        "environment_name_pattern": org.environment_name_pattern,
        "egress_allow": json.dumps(org.egress_allow),
        "egress_deny": json.dumps(org.egress_deny),
        "memberships-TOTAL_FORMS": "0",
        "memberships-INITIAL_FORMS": "0",
    }
    data.update(overrides)
    return data


def test_organization_change_goes_through_the_service(admin_client_for, org_admin, org, stages):
    client = admin_client_for(org_admin)
    response = client.post(url(Organization, "change", org.pk), _org_change_data(org, name="Acme Corp"))
    assert response.status_code == 302
    org.refresh_from_db()
    assert org.name == "Acme Corp"
    record = org.history.latest("history_date")
    assert (record.history_user, record.history_change_reason) == (org_admin, "changed: name")


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"max_environments": 2}, "max_environments"),
        ({"environment_name_pattern": r"^[a-z]+$"}, "environment_name_pattern"),
        ({"environment_name_pattern": "(broken"}, "environment_name_pattern"),
        ({"edition": Edition.STANDARD}, "edition"),
    ],
)
def test_organization_rule_violations_are_form_errors(admin_client_for, org_admin, org, stages, overrides, field):
    from django.contrib.auth.models import Permission

    # An owner who is also a platform operator: the rules, not the permission, must refuse these.
    org_admin.user_permissions.add(Permission.objects.get(codename="operate_platform"))
    before = Organization.history.filter(id=org.pk).count()
    response = admin_client_for(org_admin).post(url(Organization, "change", org.pk), _org_change_data(org, **overrides))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    org.refresh_from_db()
    assert (org.max_environments, org.edition) == (5, Edition.ENTERPRISE)
    assert Organization.history.filter(id=org.pk).count() == before


def test_non_staff_edition_change_is_a_form_error(org, plain_admin):
    """The admin asks the service; the service's staff-only rule surfaces on the form."""
    request = RequestFactory().post("/")
    request.user = plain_admin
    model_admin = django_admin.site._registry[Organization]
    form_class = model_admin.get_form(request, org, change=True)
    form = form_class(_org_change_data(org, edition=Edition.STANDARD), instance=org)
    assert not form.is_valid()
    assert "staff" in str(form.errors)
    assert Organization.objects.get(pk=org.pk).edition == Edition.ENTERPRISE


def test_membership_add_goes_through_the_service(admin_client_for, org_admin, org, stages, outsider):
    response = admin_client_for(org_admin).post(
        url(Membership, "add"), {"organization": org.pk, "user": outsider.pk, "role": Role.MEMBER}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    membership = Membership.objects.get(user=outsider, organization=org)
    assert membership.history.get().history_user == org_admin
    outsider.refresh_from_db()
    assert perms.may(outsider, perms.RUN, stages["development"])
    assert not perms.may(outsider, perms.VIEW, stages["production"])


def test_membership_rules_are_form_errors(admin_client_for, plain_admin, org, org_admin, members, outsider):
    client = admin_client_for(org_admin)
    own = Membership.objects.get(user=org_admin, organization=org)
    response = client.post(url(Membership, "change", own.pk), {"role": Role.MEMBER})
    assert response.status_code == 200
    assert "role" in response.context["adminform"].form.errors
    own.refresh_from_db()
    assert own.role == Role.OWNER

    response = client.post(
        url(Membership, "add"), {"organization": org.pk, "user": members["developer"].pk, "role": "member"}
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors


def test_membership_role_change_goes_through_the_service(admin_client_for, org_admin, org, members):
    membership = Membership.objects.get(user=members["developer"], organization=org)
    response = admin_client_for(org_admin).post(url(Membership, "change", membership.pk), {"role": Role.ADMIN})
    assert response.status_code == 302
    membership.refresh_from_db()
    assert membership.role == Role.ADMIN
    assert membership.history.latest("history_date").history_change_reason == "role set to admin"


def test_last_owner_cannot_be_deleted_in_the_admin(admin_client_for, org_admin, org, members):
    own = Membership.objects.get(user=org_admin, organization=org)
    client = admin_client_for(org_admin)
    assert client.get(url(Membership, "delete", own.pk)).status_code == 200
    response = client.post(url(Membership, "delete", own.pk), {"post": "yes"}, follow=True)
    assert Membership.objects.filter(pk=own.pk).exists()
    assert any("at least one owner" in message for message in messages_of(response))
    assert not any("deleted successfully" in message for message in messages_of(response))


def test_member_delete_in_the_admin_goes_through_the_service(admin_client_for, org_admin, org, members, make_key):
    developer = members["developer"]
    key, _ = make_key(developer, ["read"])
    membership = Membership.objects.get(user=developer, organization=org)
    response = admin_client_for(org_admin).post(url(Membership, "delete", membership.pk), {"post": "yes"})
    assert response.status_code == 302
    assert not Membership.objects.filter(pk=membership.pk).exists()
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert Membership.history.filter(id=membership.pk).latest("history_date").history_user == org_admin


def test_remove_members_action_keeps_the_last_owner(admin_client_for, org_admin, org, members):
    own = Membership.objects.get(user=org_admin, organization=org)
    developer = Membership.objects.get(user=members["developer"], organization=org)
    response = admin_client_for(org_admin).post(
        url(Membership, "changelist"),
        {"action": "remove_members", "_selected_action": [own.pk, developer.pk]},
        follow=True,
    )
    assert Membership.objects.filter(pk=own.pk).exists()
    assert not Membership.objects.filter(pk=developer.pk).exists()
    texts = messages_of(response)
    assert any("Removed 1 member" in text for text in texts)
    assert any("at least one owner" in text for text in texts)


def test_service_account_add_goes_through_the_service(admin_client_for, org_admin, org):
    response = admin_client_for(org_admin).post(
        url(ServiceAccount, "add"), {"organization": org.pk, "name": "nightly etl", "description": "cron"}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    account = ServiceAccount.objects.get(organization=org, name="nightly etl")
    assert account.user.username == "svc-acme-nightly-etl"
    assert not account.user.has_usable_password()
    assert Membership.objects.get(user=account.user, organization=org).role == Role.MEMBER
    # A duplicate is a form error, not a 500.
    response = admin_client_for(org_admin).post(
        url(ServiceAccount, "add"), {"organization": org.pk, "name": "nightly etl"}
    )
    assert response.status_code == 200
    assert "name" in response.context["adminform"].form.errors


def test_api_key_add_shows_the_token_once_and_creates_one_key(admin_client_for, org_admin, org, service_account):
    client = admin_client_for(org_admin)
    before = ApiKey.objects.count()
    response = client.post(
        url(ApiKey, "add"),
        {"organization": org.pk, "name": "deploy bot", "owner": service_account.user.pk, "scopes": ["read", "run"]},
        follow=True,
    )
    assert response.status_code == 200
    assert ApiKey.objects.count() == before + 1
    key = ApiKey.objects.get(name="deploy bot")
    assert (key.owner, key.scopes, key.created_by) == (service_account.user, ["read", "run"], org_admin)
    page = response.content.decode()
    tokens = re.findall(r"pnx_[A-Za-z0-9]+_[A-Za-z0-9]+", page)
    assert len(set(tokens)) == 1
    token = tokens[0]
    assert services.api_key_authenticate(token) == key

    # Never again: not on the next page, not on the key's own page, not in the database.
    assert token not in client.get(url(ApiKey, "changelist")).content.decode()
    detail = client.get(url(ApiKey, "change", key.pk)).content.decode()
    assert token not in detail
    assert key.key_hash not in detail
    secret = token.split("_")[2]
    assert not any(secret in str(value) for value in ApiKey.objects.filter(pk=key.pk).values().get().values())
    for row in ApiKey.history.filter(id=key.pk).values():
        assert not any(secret in str(value) for value in row.values())


def test_api_key_add_for_yourself_by_default(admin_client_for, org_admin, org):
    response = admin_client_for(org_admin).post(
        url(ApiKey, "add"), {"organization": org.pk, "name": "mine", "scopes": ["read"]}
    )
    assert response.status_code == 302
    assert ApiKey.objects.get(name="mine").owner == org_admin


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"name": "k", "scopes": []}, "scopes"),
        ({"name": "k", "scopes": ["root"]}, "scopes"),
        ({"name": "k", "scopes": ["read"], "expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"}, "expires_at"),
        ({"name": "k", "scopes": ["read"], "expires_at_0": "someday", "expires_at_1": "00:00:00"}, "expires_at"),
        ({"name": "", "scopes": ["read"]}, "name"),
    ],
)
def test_api_key_add_bad_input_is_a_form_error(admin_client_for, org_admin, org, data, field):
    before = ApiKey.objects.count()
    response = admin_client_for(org_admin).post(url(ApiKey, "add"), {"organization": org.pk, **data})
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors
    assert ApiKey.objects.count() == before
    assert "pnx_" not in response.content.decode()


def test_api_key_owner_choices_are_service_accounts_only(admin_client_for, org_admin, org, members, service_account):
    response = admin_client_for(org_admin).post(
        url(ApiKey, "add"),
        {"organization": org.pk, "name": "as dev", "owner": members["developer"].pk, "scopes": ["admin"]},
    )
    assert response.status_code == 200
    assert "owner" in response.context["adminform"].form.errors
    assert not ApiKey.objects.filter(name="as dev").exists()


def test_existing_keys_are_read_only(admin_client_for, org_admin, key):
    client = admin_client_for(org_admin)
    response = client.post(url(ApiKey, "change", key.pk), {"name": "renamed", "scopes": ["admin"]})
    assert response.status_code == 403
    key.refresh_from_db()
    assert (key.name, key.scopes) == ("ci key", ["run"])
    assert client.get(url(ApiKey, "delete", key.pk)).status_code == 403


def test_revoke_selected_keys_action(admin_client_for, org_admin, org, key, other_org, other_owner, make_key):
    other_key, _ = make_key(other_owner, ["read"], organization=other_org)
    response = admin_client_for(org_admin).post(
        url(ApiKey, "changelist"), {"action": "revoke_keys", "_selected_action": [key.pk, other_key.pk]}, follow=True
    )
    assert response.status_code == 200
    key.refresh_from_db()
    other_key.refresh_from_db()
    assert key.revoked_at is not None
    assert other_key.revoked_at is None  # not in the admin's rows, so not selectable
    assert key.history.latest("history_date").history_user == org_admin
    assert any("Revoked 1 key" in text for text in messages_of(response))
