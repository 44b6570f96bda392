"""Secrets fixtures: the resolution fixtures (project, pipeline, version, canary_secret, configured),
a superuser, a second organization and an executor persona holding use_environment_credentials."""

import pytest
from cryptography.fernet import Fernet
from django.contrib.auth import get_user_model

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.secrets import services
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition
from tests.resolution.conftest import canary_secret, configured, pipeline, project, version  # noqa: F401

User = get_user_model()

CANARY = "CANARY-s3cr3t-VALUE-9f8e7d"


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "pw")


@pytest.fixture
def other_owner(db):
    return User.objects.create_user("globexowner", "owner@globex.example", "pw", is_staff=True)


@pytest.fixture
def other_org(platform_staff, other_owner):
    return tenancy_services.organization_create(
        actor=platform_staff, name="Globex", slug="globex", edition=Edition.ENTERPRISE, owner=other_owner
    )


@pytest.fixture
def executor(org_admin, stages, service_account):
    """The service account's user, allowed to use credentials in staging only."""
    env_services.permission_grant(
        actor=org_admin, environment=stages["staging"], codename=perms.USE_CREDENTIALS, user=service_account.user
    )
    user = User.objects.get(pk=service_account.user.pk)
    perms.forget(user)
    return user


@pytest.fixture
def new_key():
    return Fernet.generate_key().decode()


@pytest.fixture
def make_secret(org, org_admin):
    def make(name="db_password", value="s3cret-value", **kwargs):
        return services.secret_create(actor=org_admin, organization=org, name=name, value=value, **kwargs)

    return make
