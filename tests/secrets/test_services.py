"""Secret services: create and rotate (fingerprint, rotated_at, history without the value), allowed
environments, deletion while referenced, providers and materialize's three conditions."""

import pytest
from django.db import connection

from apps.core import crypto
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.secrets import providers, services
from apps.secrets.models import Secret
from apps.variables import services as variable_services

from .conftest import CANARY

pytestmark = pytest.mark.django_db


def test_create_encrypts_and_fingerprints(make_secret, org_admin):
    secret = make_secret(value="hunter2-value")
    stored = Secret.objects.get(pk=secret.pk)
    assert stored.ciphertext and "hunter2" not in stored.ciphertext
    assert crypto.decrypt(stored.ciphertext) == "hunter2-value"
    assert stored.fingerprint.startswith("sha256:") and "hunter2" not in stored.fingerprint
    assert stored.rotated_at is None
    assert stored.created_by == org_admin
    assert stored.display_reference == "secret://db_password"
    created = stored.history.get()
    assert created.history_type == "+" and created.history_user == org_admin


def test_rotate_changes_fingerprint_and_records_who_without_the_value(make_secret, org_admin):
    secret = make_secret(value="first-value-111")
    before = Secret.objects.get(pk=secret.pk)
    services.secret_update(actor=org_admin, secret=secret, value="second-value-222")
    after = Secret.objects.get(pk=secret.pk)
    assert after.fingerprint != before.fingerprint
    assert after.ciphertext != before.ciphertext
    assert after.rotated_at is not None
    assert crypto.decrypt(after.ciphertext) == "second-value-222"
    latest = after.history.latest()
    assert latest.history_user == org_admin
    assert "value rotated" in latest.history_change_reason
    assert latest.fingerprint == after.fingerprint
    history_columns = {f.name for f in type(latest)._meta.fields}
    assert "ciphertext" not in history_columns
    table = type(latest)._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT * FROM {table}")  # noqa: S608  (table name from the model)
        dump = repr(cursor.fetchall())
    assert "first-value-111" not in dump and "second-value-222" not in dump
    assert before.ciphertext not in dump and after.ciphertext not in dump


def test_same_value_same_fingerprint_different_ciphertext(org, org_admin, make_secret):
    a = make_secret(name="a_secret", value="same-value")
    b = make_secret(name="b_secret", value="same-value")
    assert a.fingerprint == b.fingerprint
    assert a.ciphertext != b.ciphertext


def test_bad_input_is_refused_and_writes_nothing(org, org_admin):
    cases = [
        ({"name": "Bad Name"}, "name"),
        ({"name": "trailing\n"}, "name"),
        ({"value": ""}, "value"),
        ({"value": None}, "value"),
        ({"value": "x\x00y"}, "value"),
        ({"value": "x" * (services.MAX_VALUE_LENGTH + 1)}, "value"),
        ({"reference": "SOMETHING"}, "reference"),
        ({"provider": "vault"}, "provider"),
    ]
    for kwargs, field in cases:
        kwargs = {"name": "ok_name", "value": "v", **kwargs}
        with pytest.raises(ValidationFailed) as exc:
            services.secret_create(actor=org_admin, organization=org, **kwargs)
        assert field in exc.value.fields, (kwargs, exc.value.fields)
    assert not Secret.objects.filter(name="ok_name").exists()


def test_duplicate_name_conflicts(make_secret):
    make_secret()
    with pytest.raises(Conflict):
        make_secret()
    assert Secret.objects.filter(name="db_password").count() == 1


def test_only_owners_and_admins_manage_secrets(org, members, make_secret, outsider):
    with pytest.raises(PermissionDenied):
        services.secret_create(actor=members["developer"], organization=org, name="mine", value="v")
    secret = make_secret()
    with pytest.raises(PermissionDenied):
        services.secret_update(actor=members["developer"], secret=secret, value="other")
    with pytest.raises(PermissionDenied):
        services.secret_delete(actor=outsider, secret=secret)
    assert Secret.objects.filter(pk=secret.pk).exists()


def test_allowed_environments_change_is_audited(make_secret, org_admin, stages, other_org):
    secret = make_secret(allowed_environments=[stages["production"]])
    assert {e.slug for e in secret.allowed_environments.all()} == {"production"}
    services.secret_update(
        actor=org_admin, secret=secret, allowed_environments=[stages["staging"], stages["production"]]
    )
    secret.refresh_from_db()
    assert {e.slug for e in secret.allowed_environments.all()} == {"staging", "production"}
    latest = secret.history.latest()
    assert latest.history_user == org_admin
    assert "allowed environments" in (latest.history_change_reason or "")
    assert {row.environment.slug for row in latest.allowed_environments.all()} == {"staging", "production"}


def test_update_refuses_another_organizations_environment(make_secret, org_admin, other_org, other_owner):
    from apps.environments import services as env_services
    from apps.environments.models import Kind

    foreign = env_services.environment_create(
        actor=other_owner, organization=other_org, name="Elsewhere", kind=Kind.PRODUCTION
    )
    secret = make_secret()
    with pytest.raises(ValidationFailed) as exc:
        services.secret_update(actor=org_admin, secret=secret, allowed_environments=[foreign])
    assert "allowed_environments" in exc.value.fields
    assert not secret.allowed_environments.exists()


def test_delete_refused_while_referenced(org, org_admin, canary_secret, stages):
    variable = variable_services.variable_create(
        actor=org_admin, organization=org, name="warehouse_pw", type="secret", default_value=None
    )
    variable_services.variable_override_set(
        actor=org_admin, variable=variable, environment=stages["production"], secret=canary_secret
    )
    with pytest.raises(Conflict) as exc:
        services.secret_delete(actor=org_admin, secret=canary_secret)
    assert exc.value.status == 409
    assert "warehouse_pw" in exc.value.message
    assert Secret.objects.filter(pk=canary_secret.pk).exists()


def test_delete_unreferenced_records_who(make_secret, org_admin):
    secret = make_secret()
    pk = secret.pk
    services.secret_delete(actor=org_admin, secret=secret)
    assert not Secret.objects.filter(pk=pk).exists()
    deleted = Secret.history.filter(id=pk).latest()
    assert deleted.history_type == "-" and deleted.history_user == org_admin


# --- providers -----------------------------------------------------------------------------


def test_env_provider_reads_the_environment_at_call_time(org, org_admin, stages, monkeypatch):
    secret = services.secret_create(
        actor=org_admin,
        organization=org,
        name="from_env",
        provider="env",
        reference="PNX_SECRET_PLANASONIX_TEST",
        allowed_environments=[stages["staging"]],
    )
    assert secret.ciphertext == ""
    monkeypatch.delenv("PNX_SECRET_PLANASONIX_TEST", raising=False)
    with pytest.raises(ValidationFailed) as exc:
        services.materialize(actor=org_admin, secret=secret, environment=stages["staging"], executor=True)
    assert exc.value.code == "secret_unavailable"
    assert "PNX_SECRET_PLANASONIX_TEST" in exc.value.message
    monkeypatch.setenv("PNX_SECRET_PLANASONIX_TEST", "first")
    assert services.materialize(actor=org_admin, secret=secret, environment=stages["staging"], executor=True) == "first"
    monkeypatch.setenv("PNX_SECRET_PLANASONIX_TEST", "second")
    assert (
        services.materialize(actor=org_admin, secret=secret, environment=stages["staging"], executor=True) == "second"
    )


def test_env_provider_takes_a_reference_not_a_value(org, org_admin):
    with pytest.raises(ValidationFailed) as exc:
        services.secret_create(
            actor=org_admin, organization=org, name="e1", provider="env", value="x", reference="PNX_SECRET_A"
        )
    assert "value" in exc.value.fields
    for reference in ("", "1BAD", "HAS SPACE", "PNX_SECRET_TRAILING\n", "DATABASE_URL", "FIELD_ENCRYPTION_KEYS"):
        with pytest.raises(ValidationFailed) as exc:
            services.secret_create(actor=org_admin, organization=org, name="e2", provider="env", reference=reference)
        assert "reference" in exc.value.fields
    assert not Secret.objects.filter(name__in=["e1", "e2"]).exists()


def test_env_reference_change_rotates_fingerprint(org, org_admin):
    secret = services.secret_create(
        actor=org_admin, organization=org, name="e", provider="env", reference="PNX_SECRET_A_VAR"
    )
    before = secret.fingerprint
    services.secret_update(actor=org_admin, secret=secret, reference="PNX_SECRET_B_VAR")
    secret.refresh_from_db()
    assert secret.fingerprint != before and secret.rotated_at is not None
    with pytest.raises(ValidationFailed):
        services.secret_update(actor=org_admin, secret=secret, value="no value for env")


def test_local_value_that_no_key_decrypts_raises(canary_secret, org_admin, stages, settings, new_key):
    assert (
        services.materialize(actor=org_admin, secret=canary_secret, environment=stages["staging"], executor=True)
        == CANARY
    )
    settings.FIELD_ENCRYPTION_KEYS = [new_key]
    with pytest.raises(ValidationFailed) as exc:
        services.materialize(actor=org_admin, secret=canary_secret, environment=stages["staging"], executor=True)
    assert exc.value.code == "secret_unavailable"
    assert CANARY not in exc.value.message and canary_secret.ciphertext not in exc.value.message
    with pytest.raises(providers.SecretUnavailable):
        providers.get("local").materialize(canary_secret)


def test_materialize_requires_executor_permission_and_allowed_environment(canary_secret, executor, stages, members):
    staging, production, development = stages["staging"], stages["production"], stages["development"]
    assert services.materialize(actor=executor, secret=canary_secret, environment=staging, executor=True) == CANARY
    with pytest.raises(PermissionDenied):  # not an executor
        services.materialize(actor=executor, secret=canary_secret, environment=staging, executor=False)
    with pytest.raises(PermissionDenied):  # no use_environment_credentials in production
        services.materialize(actor=executor, secret=canary_secret, environment=production, executor=True)
    with pytest.raises(PermissionDenied) as exc:  # holds the permission in development, secret not allowed there
        services.materialize(actor=executor, secret=canary_secret, environment=development, executor=True)
    assert "not allowed" in exc.value.message
    with pytest.raises(PermissionDenied):  # a developer has no credentials right in staging
        services.materialize(actor=members["developer"], secret=canary_secret, environment=staging, executor=True)


def test_env_provider_never_hands_out_platform_variables(org, org_admin, stages, monkeypatch):
    """A row naming a non-prefixed variable (written before the rule, or by hand) is still refused at run time."""
    secret = services.secret_create(
        actor=org_admin,
        organization=org,
        name="sneaky",
        provider="env",
        reference="PNX_SECRET_SNEAKY",
        allowed_environments=[stages["staging"]],
    )
    Secret.objects.filter(pk=secret.pk).update(reference="DJANGO_SECRET_KEY")
    secret.refresh_from_db()
    monkeypatch.setenv("DJANGO_SECRET_KEY", "platform-key-value")
    with pytest.raises(ValidationFailed) as exc:
        services.materialize(actor=org_admin, secret=secret, environment=stages["staging"], executor=True)
    assert exc.value.code == "secret_unavailable" and "platform-key-value" not in exc.value.message
