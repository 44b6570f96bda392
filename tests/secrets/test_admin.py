"""Secrets admin: pages load, the value is write-only, writes go through the services (rule
violations are form errors or messages, never 500s), staff see only their organizations."""

import pytest
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse

from apps.core import crypto
from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.secrets import services
from apps.secrets.models import Secret
from apps.variables import services as variable_services

from .conftest import CANARY

pytestmark = pytest.mark.django_db

ADD = reverse("admin:secrets_secret_add")
CHANGELIST = reverse("admin:secrets_secret_changelist")


def change_url(secret):
    return reverse("admin:secrets_secret_change", args=[secret.pk])


def login(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def messages_of(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def add_payload(org, **overrides):
    data = {
        "organization": org.pk,
        "name": "admin_pw",
        "provider": "local",
        "value": CANARY,
        "reference": "",
        "description": "made in the admin",
        "_save": "Save",
    }
    data.update(overrides)
    return data


def change_payload(secret, **overrides):
    data = {
        "value": "",
        "reference": secret.reference,
        "description": secret.description,
        "allowed_environments": [e.pk for e in secret.allowed_environments.all()],
        "_save": "Save",
    }
    data.update(overrides)
    return data


@pytest.mark.parametrize("who", ["superuser", "org_admin"])
def test_pages_load(request, who, canary_secret, stages):
    client = login(request.getfixturevalue(who))
    for page in (
        CHANGELIST,
        CHANGELIST + "?q=warehouse&provider=local",
        ADD,
        change_url(canary_secret),
        reverse("admin:secrets_secret_history", args=[canary_secret.pk]),
        reverse("admin:secrets_secret_delete", args=[canary_secret.pk]),
    ):
        response = client.get(page)
        assert response.status_code == 200, (page, response.status_code)
        assert CANARY not in response.content.decode()
    changelist = client.get(CHANGELIST).content.decode()
    assert canary_secret.fingerprint in changelist and "production" in changelist


def test_add_goes_through_the_service(org, org_admin, stages):
    client = login(org_admin)
    response = client.post(ADD, add_payload(org, allowed_environments=[stages["staging"].pk]))
    assert response.status_code == 302, response.content.decode()[:3000]
    secret = Secret.objects.get(name="admin_pw")
    assert crypto.decrypt(secret.ciphertext) == CANARY
    assert secret.created_by == org_admin
    assert [e.slug for e in secret.allowed_environments.all()] == ["staging"]
    created = secret.history.earliest()
    assert created.history_user == org_admin and created.history_change_reason == "secret created"


def test_value_is_never_rendered_back(org, org_admin, canary_secret):
    client = login(org_admin)
    page = client.get(change_url(canary_secret)).content.decode()
    assert 'type="password"' in page and CANARY not in page and canary_secret.ciphertext not in page
    # A form error re-renders the form: the typed value must not come back either.
    refused = client.post(ADD, add_payload(org, name="Bad Name", value="typed-VALUE-xyz"))
    assert refused.status_code == 200
    assert "typed-VALUE-xyz" not in refused.content.decode()
    assert refused.context["adminform"].form.errors


def test_blank_value_on_change_keeps_it_and_a_value_rotates(org_admin, canary_secret, stages):
    client = login(org_admin)
    before = Secret.objects.get(pk=canary_secret.pk)
    response = client.post(change_url(canary_secret), change_payload(canary_secret, description="now described"))
    assert response.status_code == 302, response.content.decode()[:3000]
    kept = Secret.objects.get(pk=canary_secret.pk)
    assert kept.description == "now described"
    assert kept.fingerprint == before.fingerprint and kept.rotated_at is None
    assert crypto.decrypt(kept.ciphertext) == CANARY
    response = client.post(change_url(canary_secret), change_payload(kept, value="rotated-value-1"))
    assert response.status_code == 302
    rotated = Secret.objects.get(pk=canary_secret.pk)
    assert rotated.fingerprint != before.fingerprint and rotated.rotated_at is not None
    assert crypto.decrypt(rotated.ciphertext) == "rotated-value-1"
    assert rotated.history.latest().history_user == org_admin


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": "Bad Name"}, "name"),
        ({"value": ""}, "value"),
        ({"provider": "env", "value": "x", "reference": "PNX_SECRET_SOME_VAR"}, "value"),
        ({"provider": "env", "value": "", "reference": "not a var"}, "reference"),
        ({"reference": "LOCAL_HAS_NONE"}, "reference"),
        ({"provider": "vault"}, "provider"),
    ],
)
def test_add_refusals_are_form_errors(org, org_admin, stages, overrides, field):
    response = login(org_admin).post(ADD, add_payload(org, **overrides))
    assert response.status_code == 200
    assert field in response.context["adminform"].form.errors, response.context["adminform"].form.errors
    assert not Secret.objects.exists()


def test_duplicate_name_is_a_form_error(org, org_admin, canary_secret):
    response = login(org_admin).post(ADD, add_payload(org, name=canary_secret.name))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors
    assert Secret.objects.filter(name=canary_secret.name).count() == 1


def test_allowed_environments_are_limited_to_the_organization(
    org, org_admin, canary_secret, stages, other_org, other_owner, superuser
):
    foreign = env_services.environment_create(
        actor=other_owner, organization=other_org, name="Theirs", kind=Kind.PRODUCTION
    )
    client = login(org_admin)
    choices = client.get(change_url(canary_secret)).context["adminform"].form.fields["allowed_environments"].queryset
    assert set(choices) == set(stages.values())
    add_choices = client.get(ADD).context["adminform"].form.fields["allowed_environments"].queryset
    assert foreign not in set(add_choices)
    refused = client.post(change_url(canary_secret), change_payload(canary_secret, allowed_environments=[foreign.pk]))
    assert refused.status_code == 200 and "allowed_environments" in refused.context["adminform"].form.errors
    refused = client.post(ADD, add_payload(org, allowed_environments=[foreign.pk]))
    assert refused.status_code == 200 and "allowed_environments" in refused.context["adminform"].form.errors
    # A superuser may pick any environment on add; the service still refuses another organization's.
    superuser_client = login(superuser)
    refused = superuser_client.post(ADD, add_payload(org, allowed_environments=[foreign.pk]))
    assert refused.status_code == 200 and "allowed_environments" in refused.context["adminform"].form.errors
    assert {e.slug for e in Secret.objects.get(pk=canary_secret.pk).allowed_environments.all()} == {
        "staging",
        "production",
    }
    assert not Secret.objects.filter(name="admin_pw").exists()


def test_delete_referenced_gives_a_message_not_a_500(org, org_admin, canary_secret, stages):
    variable = variable_services.variable_create(
        actor=org_admin, organization=org, name="warehouse_pw", type="secret", default_value=None
    )
    variable_services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["staging"], secret=canary_secret
    )
    client = login(org_admin)
    delete_url = reverse("admin:secrets_secret_delete", args=[canary_secret.pk])
    response = client.post(delete_url, {"post": "yes"}, follow=True)
    assert response.status_code == 200
    assert any("still referenced" in m for m in messages_of(response)), messages_of(response)
    assert Secret.objects.filter(pk=canary_secret.pk).exists()
    action = client.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [canary_secret.pk], "post": "yes"}, follow=True
    )
    assert action.status_code == 200
    assert Secret.objects.filter(pk=canary_secret.pk).exists()


def test_delete_unreferenced_goes_through_the_service(org_admin, canary_secret):
    pk = canary_secret.pk
    response = login(org_admin).post(reverse("admin:secrets_secret_delete", args=[pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not Secret.objects.filter(pk=pk).exists()
    assert Secret.history.filter(id=pk).latest().history_user == org_admin


def test_staff_see_only_their_organizations_secrets(org_admin, canary_secret, other_org, other_owner):
    theirs = services.secret_create(actor=other_owner, organization=other_org, name="globex_pw", value="globex-v")
    client = login(org_admin)
    listing = client.get(CHANGELIST).content.decode()
    assert "warehouse_password" in listing and "globex_pw" not in listing
    assert client.get(change_url(theirs)).status_code in (302, 403, 404)
    assert client.post(reverse("admin:secrets_secret_delete", args=[theirs.pk]), {"post": "yes"}).status_code in (
        302,
        403,
        404,
    )
    assert Secret.objects.filter(pk=theirs.pk).exists()
    org_choices = client.get(ADD).context["adminform"].form.fields["organization"].queryset
    assert list(org_choices) == [canary_secret.organization]


def test_members_who_are_not_org_admins_cannot_use_the_secrets_admin(members, canary_secret):
    developer = members["developer"]
    developer.is_staff = True
    developer.save()
    client = login(developer)
    assert client.get(CHANGELIST).status_code == 403
    assert client.get(change_url(canary_secret)).status_code in (302, 403, 404)
