"""Personas and shared fixtures.

An enterprise organization `acme` with development → staging → production, and:
org_admin (owner), developer (member: development rights only), staging_approver and
prod_approver (members with approve rights on one stage each), outsider (no membership),
and a run-only API key owned by a service account."""

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition, Role

User = get_user_model()

pytest_plugins = ["tests.egress_support"]  # allow_loopback, sqlite_root, dns, network_platform


@pytest.fixture(autouse=True)
def _clear_caches():
    """Throttle counters and guardian's content-type cache must not leak between tests."""
    from django.contrib.contenttypes.models import ContentType

    cache.clear()
    ContentType.objects.clear_cache()
    yield
    cache.clear()


@pytest.fixture
def platform_staff(db):
    """A platform operator: staff with tenancy.operate_platform (not a superuser)."""
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True, is_superuser=False)
    user.user_permissions.add(Permission.objects.get(codename="operate_platform", content_type__app_label="tenancy"))
    return User.objects.get(pk=user.pk)


@pytest.fixture
def org_admin(db):
    return User.objects.create_user("orgadmin", "orgadmin@example.com", "pw", is_staff=True)


@pytest.fixture
def developer(db):
    return User.objects.create_user("dev", "dev@example.com", "pw")


@pytest.fixture
def staging_approver(db):
    return User.objects.create_user("stager", "stager@example.com", "pw")


@pytest.fixture
def prod_approver(db):
    return User.objects.create_user("prodder", "prodder@example.com", "pw")


@pytest.fixture
def outsider(db):
    return User.objects.create_user("outsider", "outsider@example.com", "pw")


@pytest.fixture
def org(platform_staff, org_admin):
    return tenancy_services.organization_create(
        actor=platform_staff, name="Acme", slug="acme", edition=Edition.ENTERPRISE, max_environments=5, owner=org_admin
    )


@pytest.fixture
def stages(org, org_admin):
    """dev -> staging -> production, created through the services."""
    production = env_services.environment_create(
        actor=org_admin, organization=org, name="Production", kind=Kind.PRODUCTION
    )
    staging = env_services.environment_create(
        actor=org_admin, organization=org, name="Staging", kind=Kind.STAGING, promotes_to=production
    )
    development = env_services.environment_create(
        actor=org_admin, organization=org, name="Development", kind=Kind.DEVELOPMENT, promotes_to=staging, position=0
    )
    return {"development": development, "staging": staging, "production": production}


@pytest.fixture
def members(org, org_admin, stages, developer, staging_approver, prod_approver):
    for user in (developer, staging_approver, prod_approver):
        tenancy_services.membership_add(actor=org_admin, organization=org, user=user, role=Role.MEMBER)
    for codename in (perms.VIEW, perms.APPROVE_PROMOTION):
        env_services.permission_grant(
            actor=org_admin, environment=stages["staging"], codename=codename, user=staging_approver
        )
        env_services.permission_grant(
            actor=org_admin, environment=stages["production"], codename=codename, user=prod_approver
        )
    for user in (developer, staging_approver, prod_approver, org_admin):
        user.refresh_from_db()
        perms.forget(user)
    return {"developer": developer, "staging_approver": staging_approver, "prod_approver": prod_approver}


@pytest.fixture
def service_account(org, org_admin, members):
    return tenancy_services.service_account_create(actor=org_admin, organization=org, name="ci runner")


@pytest.fixture
def run_key(org, org_admin, service_account):
    """(ApiKey, token) with only the `run` scope, owned by a service account."""
    return tenancy_services.api_key_create(
        actor=org_admin, organization=org, name="runner", scopes=["run"], owner=service_account.user
    )


@pytest.fixture
def api():
    """An API client factory: api(user) for a session, api(token=...) for a key."""

    def make(user=None, token=None):
        client = APIClient()
        if user is not None:
            client.force_login(user)
        if token is not None:
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
        return client

    return make


@pytest.fixture
def celery_worker_thread(transactional_db):
    """A real Celery worker (in a thread) consuming from the configured broker (Redis in CI,
    the filesystem transport locally). Queued leftovers from earlier runs are purged first."""
    from celery.contrib.testing.worker import start_worker

    from planasonix_env.celery import app

    app.control.purge()
    with start_worker(app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30) as worker:
        yield worker
