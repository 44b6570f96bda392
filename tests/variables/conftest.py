"""Fixtures for the variables tests (personas, `other_org` and `fresh` come from tests/conftest.py;
the configured organization from tests/resolution/conftest.py)."""

import pytest

from apps.environments import services as env_services
from apps.secrets import services as secret_services
from tests.conftest import fresh
from tests.resolution.conftest import canary_secret, configured, pipeline, project, version  # noqa: F401


def grant(org_admin, environment, user, *codenames):
    for codename in codenames:
        env_services.permission_grant(actor=org_admin, environment=environment, codename=codename, user=user)
    return fresh(user)


@pytest.fixture
def dev_secret(org, org_admin, stages):
    """A secret allowed in development only."""
    return secret_services.secret_create(
        actor=org_admin,
        organization=org,
        name="dev_token",
        value="DEV-CANARY-4b3a2c1d",
        allowed_environments=[stages["development"]],
    )
