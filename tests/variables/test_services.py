"""Variable services: typed values, validation rules, names, scopes, the plaintext-credential guard,
secret overrides, locks, cloning and history."""

import pytest

from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.variables import services
from apps.variables.models import Variable, VariableOverride

from .conftest import fresh, grant

pytestmark = pytest.mark.django_db


def define(actor, org, name="batch_size", **fields):
    return services.variable_create(actor=actor, organization=org, name=name, **fields)


def refused(func, field, *args, **kwargs) -> ValidationFailed:
    with pytest.raises(ValidationFailed) as caught:
        func(*args, **kwargs)
    assert field in caught.value.fields, caught.value.fields
    return caught.value


# --- types and validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("var_type", "good", "bad"),
    [
        ("string", "analytics", 5),
        ("string", "x", ["x"]),
        ("integer", 5000, 5.5),
        ("integer", -3, "5"),
        ("integer", 0, True),
        ("number", 0.25, "0.25"),
        ("number", 7, False),
        ("boolean", True, "true"),
        ("boolean", False, 0),
        ("json", {"a": [1, 2, {"b": None}]}, {"big": "x" * 100_001}),
    ],
)
def test_typed_defaults_and_overrides(org, org_admin, stages, var_type, good, bad):
    variable = define(org_admin, org, type=var_type, default_value=good)
    assert Variable.objects.get(pk=variable.pk).default_value == good
    refused(define, "default_value", org_admin, org, name="other_one", type=var_type, default_value=bad)
    refused(
        services.variable_override_set,
        "value",
        actor=org_admin,
        variable=variable,
        environment=stages["staging"],
        value=bad,
    )
    assert not VariableOverride.objects.exists()
    services.variable_override_set(actor=org_admin, variable=variable, environment=stages["staging"], value=good)
    assert VariableOverride.objects.get().value == good


def test_number_refuses_non_finite_and_integer_range(org, org_admin, stages):
    refused(define, "default_value", org_admin, org, type="number", default_value=float("nan"))
    refused(define, "default_value", org_admin, org, type="integer", default_value=2**64)


def test_choices_regex_and_bounds(org, org_admin, stages):
    staging = stages["staging"]
    mode = define(org_admin, org, name="mode", type="string", choices=["full", "incremental"], default_value="full")
    refused(services.variable_override_set, "value", actor=org_admin, variable=mode, environment=staging, value="x")
    services.variable_override_set(actor=org_admin, variable=mode, environment=staging, value="incremental")

    schema = define(org_admin, org, name="schema_name", type="string", regex=r"[a-z_]+", default_value="raw")
    error = refused(
        services.variable_override_set, "value", actor=org_admin, variable=schema, environment=staging, value="Raw-1"
    )
    assert "pattern" in error.message

    size = define(org_admin, org, name="batch_size", type="integer", min_value=1, max_value=10, default_value=5)
    for value in (0, 11):
        refused(
            services.variable_override_set, "value", actor=org_admin, variable=size, environment=staging, value=value
        )
    services.variable_override_set(actor=org_admin, variable=size, environment=staging, value=10)
    assert set(VariableOverride.objects.values_list("value", flat=True)) == {"incremental", 10}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"type": "integer", "regex": "[0-9]+"}, "regex"),
        ({"type": "string", "regex": "(unclosed"}, "regex"),
        ({"type": "string", "min_value": 1}, "min_value"),
        ({"type": "integer", "min_value": 5, "max_value": 1}, "max_value"),
        ({"type": "integer", "choices": [1, "two"]}, "choices.1"),
        ({"type": "json", "choices": [{}]}, "choices"),
        ({"type": "string", "required_in": ["prod"]}, "required_in"),
        ({"type": "colour"}, "type"),
        ({"type": "string", "default_value": 1, "bogus": 1}, "bogus"),
    ],
)
def test_invalid_definitions_name_the_field(org, org_admin, stages, fields, field):
    refused(define, field, org_admin, org, name="thing", **fields)
    assert not Variable.objects.exists()


def test_secret_variable_takes_secret_references_only(org, org_admin, stages, canary_secret):
    refused(define, "default_value", org_admin, org, name="warehouse_pw", type="secret", default_value="x")
    refused(define, "default_secret", org_admin, org, name="plain", type="string", default_secret=canary_secret)
    variable = define(org_admin, org, name="warehouse_pw", type="secret", default_secret=canary_secret)
    production = stages["production"]
    refused(
        services.variable_override_set, "value", actor=org_admin, variable=variable, environment=production, value="x"
    )
    refused(services.variable_override_set, "secret", actor=org_admin, variable=variable, environment=production)
    services.variable_override_set(actor=org_admin, variable=variable, environment=production, secret=canary_secret)


def test_secret_override_must_be_allowed_in_the_environment(org, org_admin, stages, canary_secret, dev_secret):
    variable = define(org_admin, org, name="api_credential", type="secret")
    error = refused(
        services.variable_override_set,
        "secret",
        actor=org_admin,
        variable=variable,
        environment=stages["development"],
        secret=canary_secret,
    )
    assert "not allowed in environment 'development'" in error.message
    refused(
        services.variable_override_set,
        "secret",
        actor=org_admin,
        variable=variable,
        environment=stages["production"],
        secret=dev_secret,
    )
    assert not VariableOverride.objects.exists()
    services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["development"], secret=dev_secret
    )


def test_secret_of_another_organization_is_refused(org, org_admin, stages, other_org):
    from apps.secrets import services as secret_services

    foreign = secret_services.secret_create(
        actor=other_org.memberships.get().user, organization=other_org, name="theirs", value="v"
    )
    refused(define, "default_secret", org_admin, org, name="pw_ref", type="secret", default_secret=foreign)


# --- names and scopes --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Db_schema", "1schema", "db-schema", "db schema", "", "a" * 65, "schéma"])
def test_invalid_names_are_refused(org, org_admin, stages, name):
    refused(define, "name", org_admin, org, name=name, type="string")
    assert not Variable.objects.exists()


@pytest.mark.parametrize("name", ["a", "db_schema", "x" + "9" * 63])
def test_valid_names(org, org_admin, stages, name):
    assert define(org_admin, org, name=name, type="string").name == name


def test_definitions_of_one_name_agree_on_type(org, org_admin, stages, project, pipeline):
    define(org_admin, org, name="batch_size", type="integer", default_value=100)
    error = refused(
        define, "type", org_admin, org, name="batch_size", project=project, type="string", default_value="x"
    )
    assert "integer" in error.message
    at_project = define(org_admin, org, name="batch_size", project=project, type="integer", default_value=50)
    at_pipeline = define(org_admin, org, name="batch_size", pipeline=pipeline, type="integer", default_value=10)
    assert (at_project.scope, at_pipeline.scope) == ("project", "pipeline")
    assert at_pipeline.project == project
    refused(services.variable_update, "type", actor=org_admin, variable=at_project, type="number")


def test_one_definition_per_scope(org, org_admin, stages, project):
    define(org_admin, org, name="region", type="string")
    with pytest.raises(Conflict):
        define(org_admin, org, name="region", type="string")
    define(org_admin, org, name="region", project=project, type="string")
    with pytest.raises(Conflict):
        define(org_admin, org, name="region", project=project, type="string")


def test_who_defines_what(org, org_admin, stages, members, project, outsider):
    developer = members["developer"]
    with pytest.raises(PermissionDenied):
        define(developer, org, name="org_wide", type="string")
    assert define(developer, org, name="project_wide", project=project, type="string").project == project
    with pytest.raises(PermissionDenied):
        define(outsider, org, name="intruder", project=project, type="string")


def test_update_keeps_existing_overrides_valid(org, org_admin, stages):
    variable = define(org_admin, org, name="mode", type="string", default_value="a")
    services.variable_override_set(actor=org_admin, variable=variable, environment=stages["staging"], value="b")
    error = refused(services.variable_update, "overrides", actor=org_admin, variable=variable, choices=["a"])
    assert "staging" in error.message
    assert Variable.objects.get(pk=variable.pk).choices is None


# --- the plaintext-credential guard ------------------------------------------------------------------

CREDENTIALS = [
    ("db_password", "hunter2"),
    ("warehouse_api_key", "abc"),
    ("tls_cert", "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----"),
    ("aws_key_id", "AKIAIOSFODNN7EXAMPLE"),
    ("upstream_url", "postgres://etl:pa55word@db.internal:5432/sales"),
    ("blob", "q8Zr3vN1xK7pL0mT5wY2bC9dF4gH6jS8aE1"),
]


@pytest.mark.parametrize(("name", "value"), CREDENTIALS)
def test_plaintext_credentials_are_refused_in_production(org, org_admin, stages, name, value):
    variable = define(org_admin, org, name=name, type="string")
    error = refused(
        services.variable_override_set,
        "value",
        actor=org_admin,
        variable=variable,
        environment=stages["production"],
        value=value,
    )
    assert "secret reference" in error.message and "production" in error.message
    assert value not in error.message
    assert not VariableOverride.objects.filter(environment=stages["production"]).exists()
    # Development's policy allows plaintext values.
    services.variable_override_set(actor=org_admin, variable=variable, environment=stages["development"], value=value)


def test_credentials_nested_in_json_are_found_by_key(org, org_admin, stages):
    variable = define(org_admin, org, name="extra_options", type="json")
    refused(
        services.variable_override_set,
        "value",
        actor=org_admin,
        variable=variable,
        environment=stages["production"],
        value={"retries": 3, "auth": {"token": "t0k"}},
    )
    services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["production"], value={"retries": 3, "tags": ["a", "b"]}
    )


@pytest.mark.parametrize("value", ["sales_prod", "https://api.example.com/v2", "2024-01-01", "s3://bucket/raw/"])
def test_ordinary_values_pass_the_guard_in_production(org, org_admin, stages, value):
    variable = define(org_admin, org, name="location", type="string")
    services.variable_override_set(actor=org_admin, variable=variable, environment=stages["production"], value=value)


def test_credential_defaults_are_refused_while_an_environment_forbids_plaintext(org, org_admin, stages):
    error = refused(define, "default_value", org_admin, org, name="db_password", type="string", default_value="x")
    assert "secret reference" in error.message


# --- overrides: uniqueness, locks, history -----------------------------------------------------------


def test_setting_twice_updates_the_one_override(org, org_admin, stages):
    variable = define(org_admin, org, name="db_schema", type="string")
    first = services.variable_override_set(actor=org_admin, variable=variable, environment=stages["staging"], value="a")
    second = services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["staging"], value="b"
    )
    assert first.pk == second.pk
    assert VariableOverride.objects.get().value == "b"
    # Setting the same value again writes nothing.
    services.variable_override_set(actor=org_admin, variable=variable, environment=stages["staging"], value="b")
    assert second.history.count() == 2
    assert {h.history_user for h in second.history.all()} == {org_admin}


def test_locked_production_needs_manage(org, org_admin, stages, members):
    production = stages["production"]
    assert production.policy.locked
    variable = define(org_admin, org, name="db_schema", type="string")
    developer = members["developer"]
    with pytest.raises(PermissionDenied):
        services.variable_override_set(actor=developer, variable=variable, environment=production, value="p")
    approver = grant(org_admin, production, members["staging_approver"], perms.VIEW, perms.CHANGE_CONFIG)
    with pytest.raises(PermissionDenied) as caught:
        services.variable_override_set(actor=approver, variable=variable, environment=production, value="p")
    assert caught.value.code == "environment_locked" and "manage_environment" in caught.value.message
    assert not VariableOverride.objects.exists()
    approver = grant(org_admin, production, approver, perms.MANAGE)
    services.variable_override_set(actor=approver, variable=variable, environment=production, value="p")
    services.variable_override_set(actor=org_admin, variable=variable, environment=production, value="p2")
    assert VariableOverride.objects.get().value == "p2"


def test_developer_edits_development_only(org, org_admin, stages, members, project):
    developer = members["developer"]
    variable = define(developer, org, name="db_schema", project=project, type="string")
    services.variable_override_set(actor=developer, variable=variable, environment=stages["development"], value="d")
    with pytest.raises(PermissionDenied):
        services.variable_override_set(actor=developer, variable=variable, environment=stages["staging"], value="s")
    services.variable_override_set(actor=org_admin, variable=variable, environment=stages["production"], value="p")
    # Deleting the variable would delete the production override: refused for the developer.
    with pytest.raises(PermissionDenied):
        services.variable_delete(actor=fresh(developer), variable=variable)
    assert Variable.objects.filter(pk=variable.pk).exists()
    services.variable_delete(actor=org_admin, variable=variable)
    assert not VariableOverride.objects.exists()


def test_override_delete_respects_the_lock(org, org_admin, stages, members):
    variable = define(org_admin, org, name="db_schema", type="string")
    override = services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["production"], value="p"
    )
    approver = grant(org_admin, stages["production"], members["prod_approver"], perms.CHANGE_CONFIG)
    with pytest.raises(PermissionDenied):
        services.variable_override_delete(actor=approver, override=override)
    services.variable_override_delete(actor=org_admin, override=override)
    assert not VariableOverride.objects.exists()
    deleted = VariableOverride.history.filter(history_type="-").get()
    assert deleted.history_user == org_admin


def test_history_records_the_acting_user(org, org_admin, stages, members, project):
    developer = members["developer"]
    variable = define(developer, org, name="db_schema", project=project, type="string", default_value="a")
    services.variable_update(actor=org_admin, variable=variable, description="schema of the marts")
    rows = list(Variable.history.filter(id=variable.pk).order_by("history_date"))
    assert [(r.history_type, r.history_user) for r in rows] == [("+", developer), ("~", org_admin)]
    assert rows[-1].history_change_reason == "changed: description"


# --- cloning -------------------------------------------------------------------------------------------


def test_overrides_clone_copies_and_validates_for_the_target(org, org_admin, stages):
    schema = define(org_admin, org, name="db_schema", type="string")
    size = define(org_admin, org, name="batch_size", type="integer")
    development, staging, production = stages["development"], stages["staging"], stages["production"]
    services.variable_override_set(actor=org_admin, variable=schema, environment=development, value="dev")
    services.variable_override_set(actor=org_admin, variable=size, environment=development, value=10)
    services.variable_override_set(actor=org_admin, variable=size, environment=staging, value=99)

    assert services.overrides_clone(actor=org_admin, source=development, target=staging) == 1
    assert VariableOverride.objects.get(variable=schema, environment=staging).value == "dev"
    assert VariableOverride.objects.get(variable=size, environment=staging).value == 99  # kept
    assert services.overrides_clone(actor=org_admin, source=development, target=staging, replace=True) == 2
    assert VariableOverride.objects.get(variable=size, environment=staging).value == 10

    assert services.overrides_clone(actor=org_admin, source=development, target=production, variables=[size]) == 1
    assert not VariableOverride.objects.filter(variable=schema, environment=production).exists()


def test_overrides_clone_refuses_values_the_target_forbids(org, org_admin, stages):
    token = define(org_admin, org, name="service_token", type="string")
    schema = define(org_admin, org, name="db_schema", type="string")
    development, production = stages["development"], stages["production"]
    services.variable_override_set(actor=org_admin, variable=schema, environment=development, value="dev")
    services.variable_override_set(actor=org_admin, variable=token, environment=development, value="plaintext-t0ken")
    error = refused(services.overrides_clone, "value", actor=org_admin, source=development, target=production)
    assert "secret reference" in error.message
    # All or nothing: not even the harmless value was copied.
    assert not VariableOverride.objects.filter(environment=production).exists()


def test_overrides_clone_refuses_secrets_not_allowed_in_the_target(org, org_admin, stages, dev_secret):
    variable = define(org_admin, org, name="api_credential", type="secret")
    services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["development"], secret=dev_secret
    )
    refused(services.overrides_clone, "secret", actor=org_admin, source=stages["development"], target=stages["staging"])


def test_overrides_clone_needs_rights_on_both_sides(org, org_admin, stages, members, other_org):
    developer = members["developer"]
    with pytest.raises(PermissionDenied):
        services.overrides_clone(actor=developer, source=stages["development"], target=stages["staging"])
    with pytest.raises(PermissionDenied):
        services.overrides_clone(actor=developer, source=stages["production"], target=stages["development"])
    other_env = env_services.environment_create(
        actor=other_org.memberships.get().user, organization=other_org, name="Development", kind="development"
    )
    with pytest.raises(PermissionDenied):  # acme's owner may not even view globex's environment
        services.overrides_clone(actor=org_admin, source=other_env, target=stages["development"])
