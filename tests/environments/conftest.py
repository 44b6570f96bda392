"""Fixtures for the environments tests (personas come from tests/conftest.py)."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition, Role
from apps.tenancy.permissions import attach_api_key, forget_org_roles

User = get_user_model()


def fresh(user):
    """The user as a new request would see it: no memoized grants, roles or API key."""
    user = User.objects.get(pk=user.pk)
    perms.forget(user)
    forget_org_roles(user)
    return user


def with_key(user, key):
    """The user as an API-key request would see it."""
    user = fresh(user)
    attach_api_key(user, key)
    return user


@pytest.fixture
def superuser(db):
    return User.objects.create_superuser("root", "root@example.com", "pw")


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
def other_owner(db):
    return User.objects.create_user("otherowner", "other@example.com", "pw", is_staff=True)


@pytest.fixture
def other_org(platform_staff, other_owner):
    return tenancy_services.organization_create(
        actor=platform_staff, name="Globex", slug="globex", edition=Edition.ENTERPRISE, owner=other_owner
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
