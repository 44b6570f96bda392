"""The connections admin: pages load, bindings inline save through the services (schema, credential,
lock and kind rules as form errors), read-only rows, staff scoping, the test action."""

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from apps.connections import services
from apps.connections.models import ConnectionBinding, ConnectionRole, ConnectionTest
from apps.environments import permissions as perms
from tests.variables.adminforms import add_row, errors_of, form_data, inline_prefix, login

from .conftest import grant

pytestmark = pytest.mark.django_db

ROLES = reverse("admin:connections_connectionrole_changelist")
ADD = reverse("admin:connections_connectionrole_add")
BINDINGS = reverse("admin:connections_connectionbinding_changelist")
TESTS = reverse("admin:connections_connectiontest_changelist")


def role_url(role, name="change"):
    return reverse(f"admin:connections_connectionrole_{name}", args=[role.pk])


def test_pages_load_for_a_superuser(superuser, configured):
    client = login(superuser)
    role = ConnectionRole.objects.get(name="reporting_db")
    binding = role.bindings.first()
    test = services.connection_test_request(actor=superuser, binding=binding)
    for url in (
        ROLES,
        ROLES + "?kind=sqlite",
        ROLES + "?q=report",
        ADD,
        role_url(role),
        role_url(role, "history"),
        BINDINGS,
        reverse("admin:connections_connectionbinding_change", args=[binding.pk]),
        reverse("admin:connections_connectionbinding_history", args=[binding.pk]),
        TESTS,
        reverse("admin:connections_connectiontest_change", args=[test.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "CANARY" not in response.content.decode(), url


def test_add_role_through_the_service(org, org_admin, stages):
    client = login(org_admin)
    response = client.post(
        ADD, {"organization": org.pk, "project": "", "name": "warehouse", "kind": "postgres", "description": ""}
    )
    assert response.status_code == 302, errors_of(response)
    role = ConnectionRole.objects.get()
    assert role.history.get().history_user == org_admin
    duplicate = client.post(
        ADD, {"organization": org.pk, "project": "", "name": "warehouse", "kind": "sqlite", "description": ""}
    )
    errors_of(duplicate)
    bad = client.post(ADD, {"organization": org.pk, "project": "", "name": "Ware House", "kind": "sqlite"})
    assert "a-z" in errors_of(bad)
    assert ConnectionRole.objects.count() == 1


def test_inline_binding_saves_through_the_service(org, org_admin, stages, canary_secret):
    role = services.connection_role_create(actor=org_admin, organization=org, name="warehouse", kind="postgres")
    client = login(org_admin)
    page = client.get(role_url(role))
    data = form_data(page)
    add_row(
        data,
        inline_prefix(page),
        environment=stages["production"].pk,
        params='{"host": "db.prod", "port": 5432, "database": "{{ db_schema }}"}',
        credential=canary_secret.pk,
    )
    response = client.post(role_url(role), data)
    assert response.status_code == 302, errors_of(response)
    binding = ConnectionBinding.objects.get()
    assert binding.params["database"] == "{{ db_schema }}" and binding.credential == canary_secret
    assert binding.history.get().history_user == org_admin


@pytest.mark.parametrize(
    ("params", "credential", "expected"),
    [
        ('{"host": "h", "database": "d", "password": "hunter2"}', None, "reference a Secret"),
        ('{"host": "h", "database": "d", "port": "5432"}', None, "port: Expected int"),
        ('{"host": "h"}', None, "database: Required"),
        ('{"host": "h", "database": "d"}', "dev_secret", "not allowed in environment 'production'"),
        ("not json", None, "JSON"),
    ],
)
def test_inline_binding_errors_write_nothing(org, org_admin, stages, dev_secret, params, credential, expected):
    role = services.connection_role_create(actor=org_admin, organization=org, name="warehouse", kind="postgres")
    client = login(org_admin)
    page = client.get(role_url(role))
    data = form_data(page)
    data["description"] = "changed in the same submit"
    add_row(
        data,
        inline_prefix(page),
        environment=stages["production"].pk,
        params=params,
        credential=dev_secret.pk if credential else "",
    )
    errors = errors_of(client.post(role_url(role), data))
    assert expected in errors and "hunter2" not in errors
    assert not ConnectionBinding.objects.exists()
    assert ConnectionRole.objects.get().description == ""


def test_credential_choices_are_the_organizations_secrets(org, org_admin, stages, other_org, canary_secret):
    from apps.secrets import services as secret_services

    secret_services.secret_create(
        actor=other_org.memberships.get().user, organization=other_org, name="theirs", value="v"
    )
    role = services.connection_role_create(actor=org_admin, organization=org, name="warehouse", kind="postgres")
    page = login(org_admin).get(role_url(role))
    empty = page.context["inline_admin_formsets"][0].formset.empty_form
    assert {s.name for s in empty.fields["credential"].queryset} == {"warehouse_password"}


def test_kind_of_a_bound_role_cannot_change_in_the_admin(org_admin, configured):
    role = ConnectionRole.objects.get(name="reporting_db")
    client = login(org_admin)
    data = form_data(client.get(role_url(role)))
    data["kind"] = "postgres"
    assert "cannot change" in errors_of(client.post(role_url(role), data))
    assert ConnectionRole.objects.get(pk=role.pk).kind == "sqlite"


def test_locked_rows_are_read_only_for_editors_without_manage(org, org_admin, stages, members, project):
    role = services.connection_role_create(
        actor=org_admin, organization=org, project=project, name="warehouse", kind="sqlite"
    )
    for slug in ("staging", "production"):
        services.connection_binding_set(
            actor=org_admin, role=role, environment=stages[slug], params={"path": f"{slug}.sqlite3"}
        )
    editor = grant(org_admin, stages["staging"], members["staging_approver"], perms.CHANGE_CONFIG)
    editor = grant(org_admin, stages["production"], editor, perms.VIEW, perms.CHANGE_CONFIG)
    client = login(editor)
    page = client.get(role_url(role))
    forms = {f.instance.environment.slug: f for f in page.context["inline_admin_formsets"][0].formset.initial_forms}
    assert forms["production"].read_only and not forms["staging"].read_only
    data = form_data(page)
    prefix = inline_prefix(page)
    indexes = {slug: i for i, slug in enumerate(forms)}
    data[f"{prefix}-{indexes['production']}-params"] = '{"path": "tampered.sqlite3"}'
    data[f"{prefix}-{indexes['production']}-DELETE"] = "on"
    data[f"{prefix}-{indexes['staging']}-params"] = '{"path": "staging2.sqlite3"}'
    response = client.post(role_url(role), data)
    assert response.status_code == 302, errors_of(response)
    paths = dict(ConnectionBinding.objects.values_list("environment__slug", "params__path"))
    assert paths == {"staging": "staging2.sqlite3", "production": "production.sqlite3"}


def test_inline_delete_and_role_delete_go_through_services(org_admin, stages, configured):
    role = ConnectionRole.objects.get(name="reporting_db")
    client = login(org_admin)
    page = client.get(role_url(role))
    data = form_data(page)
    prefix = inline_prefix(page)
    data[f"{prefix}-0-DELETE"] = "on"
    assert client.post(role_url(role), data).status_code == 302
    assert role.bindings.count() == 2
    assert ConnectionBinding.history.filter(history_type="-").get().history_user == org_admin
    assert client.post(role_url(role, "delete"), {"post": "yes"}).status_code == 302
    assert not ConnectionRole.objects.filter(pk=role.pk).exists()
    assert ConnectionRole.history.filter(history_type="-").get().history_user == org_admin


def test_staff_see_only_their_organizations(org, org_admin, stages, other_org, configured):
    foreign = services.connection_role_create(
        actor=other_org.memberships.get().user, organization=other_org, name="foreign_role", kind="sqlite"
    )
    client = login(org_admin)
    listing = client.get(ROLES).content.decode()
    assert "reporting_db" in listing and "foreign_role" not in listing
    assert client.get(role_url(foreign)).status_code != 200
    assert set(client.get(ADD).context["adminform"].form.fields["organization"].queryset) == {org}


def test_test_connection_action_queues_tests(org_admin, stages, members, configured):
    bindings = list(ConnectionBinding.objects.filter(role__name="reporting_db"))
    client = login(org_admin)
    response = client.post(
        BINDINGS, {"action": "test_connection", ACTION_CHECKBOX_NAME: [b.pk for b in bindings]}, follow=True
    )
    assert response.status_code == 200
    assert "Queued 3 connection test" in response.content.decode()
    assert ConnectionTest.objects.filter(status="queued", requested_by=org_admin).count() == 3
    # Someone who may only view production's bindings cannot test them: a message, nothing queued.
    viewer = members["prod_approver"]
    production = [b for b in bindings if b.environment == stages["production"]]
    response = login(viewer).post(
        BINDINGS, {"action": "test_connection", ACTION_CHECKBOX_NAME: [b.pk for b in production]}, follow=True
    )
    assert "run_in_environment" in response.content.decode()
    assert ConnectionTest.objects.count() == 3
