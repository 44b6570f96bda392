"""Fixtures for the variables tests (personas come from tests/conftest.py; the configured
organization from tests/resolution/conftest.py)."""

import pytest
from django.contrib.auth import get_user_model

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.secrets import services as secret_services
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition
from apps.tenancy.permissions import forget_org_roles
from tests.resolution.conftest import canary_secret, configured, pipeline, project, version  # noqa: F401

User = get_user_model()


def fresh(user):
    """The user as a new request would see it: no memoized grants or roles."""
    user = User.objects.get(pk=user.pk)
    perms.forget(user)
    forget_org_roles(user)
    return user


def grant(org_admin, environment, user, *codenames):
    for codename in codenames:
        env_services.permission_grant(actor=org_admin, environment=environment, codename=codename, user=user)
    return fresh(user)


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "pw")


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


@pytest.fixture
def other_org(platform_staff, db):
    owner = User.objects.create_user("otherowner", "other@example.com", "pw", is_staff=True)
    return tenancy_services.organization_create(
        actor=platform_staff, name="Globex", slug="globex", edition=Edition.ENTERPRISE, owner=owner
    )
