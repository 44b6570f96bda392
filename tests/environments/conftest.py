"""Fixtures for the environments tests (personas, `other_org`, `fresh` and `with_key` come from
tests/conftest.py)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition, Role
from tests.conftest import fresh, with_key

User = get_user_model()


@pytest.fixture
def standard_owner(db):
    return User.objects.create_user("smallowner", "small@example.com", "pw", is_staff=True)


@pytest.fixture
def standard_org(platform_staff, standard_owner):
    """A standard-edition organization: one implicit environment, no environments feature."""
    return tenancy_services.organization_create(
        actor=platform_staff, name="Small Co", slug="small", edition=Edition.STANDARD, owner=standard_owner
    )


@pytest.fixture
def other_env(other_org, other_owner):
    return env_services.environment_create(
        actor=other_owner, organization=other_org, name="Production", kind=Kind.PRODUCTION
    )


@pytest.fixture
def deployers(org, org_admin, stages, members):
    """A group holding run_in_environment on staging, with the developer in it."""
    group = Group.objects.create(name="deployers")
    members["developer"].groups.add(group)
    env_services.permission_grant(actor=org_admin, environment=stages["staging"], codename=perms.RUN, group=group)
    return group


@pytest.fixture
def personas(
    org, org_admin, stages, members, superuser, other_org, other_owner, run_key, deployers, platform_staff, outsider
):
    """name -> user object as a request would carry it (keys attached where the persona is a key)."""
    inactive = User.objects.create_user("gone", "gone@example.com", "pw")
    tenancy_services.membership_add(actor=org_admin, organization=org, user=inactive, role=Role.MEMBER)
    User.objects.filter(pk=inactive.pk).update(is_active=False)

    admin_write_key, _ = tenancy_services.api_key_create(
        actor=org_admin, organization=org, name="admin write", scopes=["write"]
    )
    dev_read_key, _ = tenancy_services.api_key_create(
        actor=members["developer"], organization=org, name="dev read", scopes=["read"]
    )
    # The developer also belongs to another organization; a key of that one must not reach acme.
    tenancy_services.membership_add(actor=other_owner, organization=other_org, user=members["developer"])
    dev_foreign_key, _ = tenancy_services.api_key_create(
        actor=members["developer"], organization=other_org, name="globex admin", scopes=["admin"]
    )
    key, _token = run_key
    return {
        "org_admin": fresh(org_admin),
        "developer": fresh(members["developer"]),
        "staging_approver": fresh(members["staging_approver"]),
        "prod_approver": fresh(members["prod_approver"]),
        "outsider": fresh(outsider),
        "platform_staff": fresh(platform_staff),
        "superuser": fresh(superuser),
        "inactive_member": fresh(inactive),
        "run_key": with_key(key.owner, key),
        "admin_write_key": with_key(org_admin, admin_write_key),
        "developer_read_key": with_key(members["developer"], dev_read_key),
        "developer_foreign_key": with_key(members["developer"], dev_foreign_key),
    }
