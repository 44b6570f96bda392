"""The variables admin: pages load, writes (variable and inline overrides) go through the services
and refuse bad input as form errors, read-only rows, staff scoping, and the admin actions."""

import pytest
import yaml
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse

from apps.environments import permissions as perms
from apps.variables import services
from apps.variables.models import Variable, VariableOverride

from .adminforms import add_row, errors_of, form_data, inline_prefix, login
from .conftest import grant

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:variables_variable_changelist")
ADD = reverse("admin:variables_variable_add")


def change_url(variable, suffix=""):
    name = {"": "change", "history/": "history", "delete/": "delete"}[suffix]
    return reverse(f"admin:variables_variable_{name}", args=[variable.pk])


def add_payload(org, **overrides):
    data = {
        "organization": org.pk,
        "project": "",
        "pipeline": "",
        "name": "batch_size",
        "type": "integer",
        "default_value": "500",
        "default_secret": "",
        "description": "",
        "choices": "null",
        "regex": "",
        "min_value": "",
        "max_value": "",
    }
    data.update(overrides)
    return data


def test_pages_load_for_a_superuser(superuser, configured):
    client = login(superuser)
    override = VariableOverride.objects.first()
    for url in (
        CHANGELIST,
        CHANGELIST + "?scope=organization&type=string",
        CHANGELIST + "?q=db_schema",
        ADD,
        change_url(configured),
        change_url(configured, "history/"),
        reverse("admin:variables_variableoverride_changelist"),
        reverse("admin:variables_variableoverride_history", args=[override.pk]),
    ):
        response = client.get(url)
        assert response.status_code == 200, url
    assert "db_schema" in client.get(CHANGELIST).content.decode()
    page = client.get(change_url(configured)).content.decode()
    assert "CANARY" not in page


def test_add_goes_through_the_service(org, org_admin, stages):
    response = login(org_admin).post(ADD, add_payload(org, required_in=["production"]))
    assert response.status_code == 302, errors_of(response)
    variable = Variable.objects.get()
    assert variable.default_value == 500 and variable.required_in == ["production"]
    assert variable.history.get().history_user == org_admin


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        ({"name": "Batch-Size"}, "a-z"),
        ({"default_value": "five"}, "JSON"),
        ({"default_value": '"5"'}, "Expected an integer"),
        ({"min_value": "10", "max_value": "1"}, "min_value"),
        ({"type": "string", "name": "db_password", "default_value": "hunter2"}, "secret reference"),
        ({"type": "string", "regex": "(open"}, "regular expression"),
    ],
)
def test_add_refuses_bad_input_as_form_errors(org, org_admin, stages, overrides, expected):
    response = login(org_admin).post(ADD, add_payload(org, **overrides))
    assert expected in errors_of(response)
    assert not Variable.objects.exists()


def test_add_refuses_a_type_clash_across_scopes(org, org_admin, stages, project):
    services.variable_create(actor=org_admin, organization=org, name="batch_size", type="integer")
    response = login(org_admin).post(ADD, add_payload(org, project=project.pk, type="string", default_value="x"))
    assert "agree on type" in errors_of(response)
    assert Variable.objects.count() == 1


def test_change_saves_definition_and_inline_overrides_through_services(org, org_admin, stages, configured):
    client = login(org_admin)
    page = client.get(change_url(configured))
    data = form_data(page)
    prefix = inline_prefix(page)
    data["description"] = "schema of the marts"
    add_row(data, prefix, environment=stages["development"].pk, value="dev_x", secret="")
    response = client.post(change_url(configured), data)
    assert response.status_code == 302, errors_of(response)
    configured.refresh_from_db()
    assert configured.description == "schema of the marts"
    override = VariableOverride.objects.get(variable=configured, environment=stages["development"])
    assert override.value == "dev_x"
    assert override.history.get().history_user == org_admin
    assert configured.history.first().history_change_reason == "changed: description"


def test_inline_typed_values(org, org_admin, stages):
    variable = services.variable_create(
        actor=org_admin, organization=org, name="batch_size", type="integer", default_value=1, max_value=100
    )
    client = login(org_admin)
    page = client.get(change_url(variable))
    prefix = inline_prefix(page)
    for bad, expected in (("abc", "JSON"), ("1.5", "integer"), ("500", "at most"), ('"5"', "integer")):
        data = form_data(page)
        add_row(data, prefix, environment=stages["staging"].pk, value=bad, secret="")
        assert expected in errors_of(client.post(change_url(variable), data))
    assert not VariableOverride.objects.exists()
    data = form_data(page)
    add_row(data, prefix, environment=stages["staging"].pk, value="42", secret="")
    assert client.post(change_url(variable), data).status_code == 302
    assert VariableOverride.objects.get().value == 42


def test_inline_credential_in_production_is_a_form_error_and_writes_nothing(org, org_admin, stages):
    variable = services.variable_create(actor=org_admin, organization=org, name="service_token", type="string")
    client = login(org_admin)
    page = client.get(change_url(variable))
    data = form_data(page)
    data["description"] = "changed in the same submit"
    add_row(data, inline_prefix(page), environment=stages["production"].pk, value="t0ken-value", secret="")
    errors = errors_of(client.post(change_url(variable), data))
    assert "secret reference" in errors and "t0ken-value" not in errors
    assert not VariableOverride.objects.exists()
    assert Variable.objects.get().description == ""


def test_inline_secret_must_be_allowed_in_the_environment(org, org_admin, stages, canary_secret):
    variable = services.variable_create(actor=org_admin, organization=org, name="warehouse_pw", type="secret")
    client = login(org_admin)
    page = client.get(change_url(variable))
    data = form_data(page)
    add_row(data, inline_prefix(page), environment=stages["development"].pk, value="", secret=canary_secret.pk)
    assert "not allowed in environment 'development'" in errors_of(client.post(change_url(variable), data))
    data = form_data(page)
    add_row(data, inline_prefix(page), environment=stages["production"].pk, value="", secret=canary_secret.pk)
    assert client.post(change_url(variable), data).status_code == 302
    assert VariableOverride.objects.get().secret == canary_secret


def test_inline_delete_goes_through_the_service(org_admin, stages, configured):
    client = login(org_admin)
    page = client.get(change_url(configured))
    data = form_data(page)
    prefix = inline_prefix(page)
    staging_index = next(
        i
        for i, form in enumerate(page.context["inline_admin_formsets"][0].formset.initial_forms)
        if form.instance.environment == stages["staging"]
    )
    data[f"{prefix}-{staging_index}-DELETE"] = "on"
    assert client.post(change_url(configured), data).status_code == 302
    assert not VariableOverride.objects.filter(environment=stages["staging"]).exists()
    assert VariableOverride.history.filter(history_type="-").get().history_user == org_admin


def test_rows_the_staff_user_may_not_edit_are_read_only(org, org_admin, stages, members, project):
    variable = services.variable_create(
        actor=org_admin, organization=org, project=project, name="db_schema", type="string"
    )
    for slug, value in (("staging", "stg"), ("production", "prod")):
        services.variable_override_set(actor=org_admin, variable=variable, environment=stages[slug], value=value)
    # change_environment_config on staging and on (locked) production, but not manage_environment.
    approver = grant(org_admin, stages["staging"], members["staging_approver"], perms.VIEW, perms.CHANGE_CONFIG)
    approver = grant(org_admin, stages["production"], approver, perms.VIEW, perms.CHANGE_CONFIG)
    client = login(approver)
    page = client.get(change_url(variable))
    assert page.status_code == 200
    forms = {f.instance.environment.slug: f for f in page.context["inline_admin_formsets"][0].formset.initial_forms}
    assert forms["production"].read_only and forms["production"].fields["value"].disabled
    assert not forms["staging"].read_only
    new_row_choices = {
        e.slug for e in page.context["inline_admin_formsets"][0].formset.empty_form.fields["environment"].queryset
    }
    assert new_row_choices == {"development", "staging"}  # members get development rights by default
    data = form_data(page)
    prefix = inline_prefix(page)
    indexes = {slug: i for i, slug in enumerate(forms)}
    data[f"{prefix}-{indexes['production']}-value"] = "tampered"
    data[f"{prefix}-{indexes['production']}-DELETE"] = "on"
    data[f"{prefix}-{indexes['staging']}-value"] = "stg2"
    response = client.post(change_url(variable), data)
    assert response.status_code == 302, errors_of(response)
    values = dict(VariableOverride.objects.values_list("environment__slug", "value"))
    assert values == {"staging": "stg2", "production": "prod"}


def test_locked_environment_refuses_a_new_row_without_manage(org, org_admin, stages, members, project):
    variable = services.variable_create(
        actor=org_admin, organization=org, project=project, name="db_schema", type="string"
    )
    approver = grant(org_admin, stages["production"], members["prod_approver"], perms.VIEW, perms.CHANGE_CONFIG)
    client = login(approver)
    page = client.get(change_url(variable))
    data = form_data(page)
    add_row(data, inline_prefix(page), environment=stages["production"].pk, value="prod", secret="")
    errors_of(client.post(change_url(variable), data))  # production is not even a choice
    assert not VariableOverride.objects.exists()


def test_staff_see_only_their_organizations(org, org_admin, stages, other_org, configured):
    foreign = services.variable_create(
        actor=other_org.memberships.get().user, organization=other_org, name="foreign_var", type="string"
    )
    client = login(org_admin)
    listing = client.get(CHANGELIST).content.decode()
    assert "db_schema" in listing and "foreign_var" not in listing
    assert client.get(change_url(foreign)).status_code != 200
    assert client.get(change_url(foreign, "history/")).status_code != 200
    add_page = client.get(ADD)
    assert set(add_page.context["adminform"].form.fields["organization"].queryset) == {org}
    response = client.post(ADD, add_payload(other_org, name="sneaky"))
    errors_of(response)
    assert not Variable.objects.filter(name="sneaky").exists()


def test_delete_goes_through_the_service(superuser, org_admin, stages, configured):
    client = login(org_admin)
    response = client.post(change_url(configured, "delete/"), {"post": "yes"})
    assert response.status_code == 302
    assert not Variable.objects.exists()
    assert Variable.history.filter(history_type="-").get().history_user == org_admin


def test_delete_refused_by_the_service_is_a_message(org, org_admin, stages, members, project):
    developer = members["developer"]
    variable = services.variable_create(
        actor=developer, organization=org, project=project, name="db_schema", type="string"
    )
    services.variable_override_set(actor=org_admin, variable=variable, environment=stages["production"], value="p")
    client = login(developer)
    response = client.post(change_url(variable, "delete/"), {"post": "yes"}, follow=True)
    assert "locked" in response.content.decode() or "lack" in response.content.decode()
    assert Variable.objects.filter(pk=variable.pk).exists()


# --- actions ------------------------------------------------------------------------------------------


def _action(client, action, variables, **extra):
    return client.post(
        CHANGELIST, {"action": action, ACTION_CHECKBOX_NAME: [v.pk for v in variables], **extra}, follow=False
    )


def test_clone_overrides_action(org, org_admin, stages, configured):
    client = login(org_admin)
    intermediate = _action(client, "clone_overrides", [configured])
    assert intermediate.status_code == 200
    assert "Clone overrides" in intermediate.content.decode()
    response = _action(
        client,
        "clone_overrides",
        [configured],
        apply="1",
        source=stages["staging"].pk,
        target=stages["development"].pk,
    )
    assert response.status_code == 302
    assert VariableOverride.objects.get(environment=stages["development"]).value == "stg"
    messages = [str(m) for m in client.get(CHANGELIST).context["messages"]]
    assert any("Copied 1 override" in m for m in messages)


def test_clone_overrides_action_reports_service_refusals(org, org_admin, stages, members, project):
    token = services.variable_create(actor=org_admin, organization=org, name="service_token", type="string")
    services.variable_override_set(actor=org_admin, variable=token, environment=stages["development"], value="t0k")
    client = login(org_admin)
    response = _action(
        client,
        "clone_overrides",
        [token],
        apply="1",
        source=stages["development"].pk,
        target=stages["production"].pk,
    )
    assert response.status_code == 302
    messages = [str(m) for m in client.get(CHANGELIST).context["messages"]]
    assert any("secret reference" in m for m in messages)
    assert not VariableOverride.objects.filter(environment=stages["production"]).exists()
    same = _action(
        client, "clone_overrides", [token], apply="1", source=stages["staging"].pk, target=stages["staging"].pk
    )
    assert same.status_code == 200 and "other than the source" in same.content.decode()


def test_check_readiness_action(org, org_admin, stages, configured, pipeline):
    client = login(org_admin)
    response = _action(client, "check_readiness", [configured])
    assert response.status_code == 200
    rows = {
        (str(row["pipeline"]), cell["environment"].slug): cell
        for row in response.context["rows"]
        for cell in row["cells"]
    }
    assert set(rows) == {(str(pipeline), slug) for slug in ("development", "staging", "production")}
    assert rows[(str(pipeline), "production")]["ready"] is True
    # A variable required in production without a value there makes production not ready.
    services.variable_create(
        actor=org_admin, organization=org, name="target_bucket", type="string", required_in=["production"]
    )
    response = _action(client, "check_readiness", [configured])
    cell = next(c for c in response.context["rows"][0]["cells"] if c["environment"].slug == "production")
    assert cell["ready"] is False and any("target_bucket" in p for p in cell["problems"])
    assert "not ready" in response.content.decode()


def test_export_configuration_action(org, org_admin, stages, configured, members):
    response = _action(login(org_admin), "export_configuration", [configured])
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="acme-configuration.yaml"'
    body = response.content.decode()
    assert "CANARY" not in body
    document = yaml.safe_load(body)
    (variable,) = document["variables"]
    assert variable["name"] == "db_schema"
    assert variable["overrides"] == {"production": {"value": "prod"}, "staging": {"value": "stg"}}
    # A member who is not an administrator may not export every environment's configuration.
    refused = _action(login(members["developer"]), "export_configuration", [configured])
    assert refused.status_code == 302
