"""Regressions for review findings: credential use by narrowed keys, env-secret names, cross-tenant
channel ids, malformed query input, cache invalidation on rename."""

import pytest

from apps.connections import services as connection_services
from apps.connections.models import ConnectionBinding, ConnectionTest
from apps.core.errors import ValidationFailed
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.notifications import services as notification_services
from apps.resolution import engine
from apps.secrets import services as secret_services
from apps.tenancy import services as tenancy_services


def test_connection_test_through_a_write_key_may_not_use_credentials(
    configured, org, org_admin, stages, api, django_capture_on_commit_callbacks
):
    """A `write` key cannot send its owner's credentials to a host it has just configured."""
    _, token = tenancy_services.api_key_create(actor=org_admin, organization=org, name="w", scopes=["write"])
    binding = ConnectionBinding.objects.get(role__name="reporting_db", environment=stages["staging"])
    with django_capture_on_commit_callbacks(execute=False):
        response = api(token=token).post(f"/api/v1/connection-bindings/{binding.pk}/test/")
    assert response.status_code == 202, response.content
    test = ConnectionTest.objects.get(pk=response.json()["id"])
    assert test.may_use_credentials is False
    with django_capture_on_commit_callbacks(execute=False):
        by_session = connection_services.connection_test_request(actor=org_admin, binding=binding)
    assert by_session.may_use_credentials is True

    from apps.resolution import connection_tests

    finished = connection_tests.run(test.pk)
    assert finished.status == ConnectionTest.Status.FAILED
    assert "credential was not used" in finished.message


@pytest.mark.parametrize("reference", ["DJANGO_SECRET_KEY", "FIELD_ENCRYPTION_KEYS", "DATABASE_URL"])
def test_env_secrets_cannot_name_platform_variables(org, org_admin, stages, reference):
    with pytest.raises(ValidationFailed) as exc:
        secret_services.secret_create(
            actor=org_admin,
            organization=org,
            name="sneaky",
            provider="env",
            reference=reference,
            allowed_environments=[stages["development"]],
        )
    assert "reference" in exc.value.fields


def test_policy_refuses_other_tenants_channel_without_naming_it(org, org_admin, stages, api, other_org, other_owner):
    other = other_org
    channel, _ = notification_services.channel_create(
        actor=other_owner, organization=other, name="globex-secret-room", kind="email", target="ops@globex.test"
    )
    response = api(org_admin).patch(
        f"/api/v1/environments/{stages['development'].pk}/policy/", {"notification_channels": [channel.pk]}
    )
    assert response.status_code == 400
    assert "globex-secret-room" not in response.content.decode()
    assert "notification_channels" in response.json()["error"]["fields"]


@pytest.mark.parametrize(
    "query",
    [{"environment": "production", "version": "²"}, {"environment": "production", "as_of": "2026-13-45T00:00:00Z"}],
)
def test_malformed_resolve_query_is_400(configured, pipeline, api, org_admin, query):
    response = api(org_admin).get(f"/api/v1/pipelines/{pipeline.pk}/resolve/", query)
    assert response.status_code == 400, response.content
    assert set(response.json()["error"]["fields"]) & {"version", "as_of"}


def test_non_ascii_digit_pipeline_id_is_404(configured, api, org_admin):
    assert api(org_admin).get("/api/v1/pipelines/²/resolve/", {"environment": "production"}).status_code == 404


def test_renaming_an_environment_invalidates_cached_answers(configured, pipeline, stages, org_admin):
    staging = stages["staging"]
    assert engine.resolve(pipeline, staging)["environment"]["slug"] == "staging"
    env_services.environment_update(actor=org_admin, environment=staging, slug="preprod", name="Preprod")
    staging.refresh_from_db()
    assert engine.resolve(pipeline, staging)["environment"]["slug"] == "preprod"
    assert perms.may(org_admin, perms.VIEW, staging)
