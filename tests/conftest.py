"""Personas and shared fixtures.

An enterprise organization `acme` with development → staging → production, and:
org_admin (owner), developer (member: development rights only), staging_approver and
prod_approver (members with approve rights on one stage each), outsider (no membership),
and a run-only API key owned by a service account. Beside it: `superuser` (root), and a second
enterprise organization `other_org` (Globex) owned by `other_owner` (staff, not a member of acme).

Every row is made through the services, as in production (the helpers below are the factories:
factory-boy's model factories would write around the services' invariants, so the suite does not
use it). `fresh(user)` and `with_key(user, key)` give a user as a new request would carry it."""

import time
from contextlib import ExitStack

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from rest_framework.test import APIClient

from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import Kind
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Edition, Role
from apps.tenancy.permissions import attach_api_key, forget_org_roles

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


# --- the personas, as functions (the fixtures below, and worlds built once per module, use them) --


def make_platform_staff():
    """A platform operator: staff with tenancy.operate_platform (not a superuser)."""
    from django.contrib.auth.models import Permission

    user = User.objects.create_user("staff", "staff@example.com", "pw", is_staff=True, is_superuser=False)
    user.user_permissions.add(Permission.objects.get(codename="operate_platform", content_type__app_label="tenancy"))
    return User.objects.get(pk=user.pk)


# The plain personas: fixture name -> username.
PERSONA_USERNAMES = {
    "developer": "dev",
    "staging_approver": "stager",
    "prod_approver": "prodder",
    "outsider": "outsider",
}


def make_user(username: str, **extra):
    return User.objects.create_user(username, f"{username}@example.com", "pw", **extra)


def make_superuser():
    return User.objects.create_superuser("root", "root@example.com", "pw")


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


def make_org(platform_staff, org_admin):
    return tenancy_services.organization_create(
        actor=platform_staff, name="Acme", slug="acme", edition=Edition.ENTERPRISE, max_environments=5, owner=org_admin
    )


def make_stages(org, org_admin) -> dict:
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


def make_members(org, org_admin, stages, developer, staging_approver, prod_approver) -> dict:
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


def make_service_account(org, org_admin):
    return tenancy_services.service_account_create(actor=org_admin, organization=org, name="ci runner")


def make_acme() -> dict:
    """Every persona of the module docstring at once, keyed by its fixture's name."""
    acme = {"platform_staff": make_platform_staff(), "org_admin": make_user("orgadmin", is_staff=True)}
    for name, username in PERSONA_USERNAMES.items():
        acme[name] = make_user(username)
    acme["org"] = make_org(acme["platform_staff"], acme["org_admin"])
    acme["stages"] = make_stages(acme["org"], acme["org_admin"])
    acme["members"] = make_members(
        acme["org"],
        acme["org_admin"],
        acme["stages"],
        acme["developer"],
        acme["staging_approver"],
        acme["prod_approver"],
    )
    acme["service_account"] = make_service_account(acme["org"], acme["org_admin"])
    return acme


@pytest.fixture(scope="module")
def module_db(django_db_setup, django_db_blocker):
    """For a world built once per module: runs build() in a transaction that stays open while the
    module's tests run (each test's own `db` transaction nests in it as a savepoint, rolled back
    after the test as usual) and is rolled back after the module's last test.

        @pytest.fixture(scope="module")
        def shared_world(module_db):
            return module_db(lambda: {...})

    Only for modules whose tests use `db` (not `transactional_db`, whose flush would end it)."""
    from django.db import transaction

    outer = transaction.atomic()
    entered = False

    def build(make):
        nonlocal entered
        with django_db_blocker.unblock():
            outer.__enter__()
            entered = True
            return make()

    yield build
    if entered:
        with django_db_blocker.unblock():
            transaction.set_rollback(True)
            outer.__exit__(None, None, None)


# --- the personas, as fixtures ---------------------------------------------------------------


@pytest.fixture
def platform_staff(db):
    return make_platform_staff()


@pytest.fixture
def org_admin(db):
    return make_user("orgadmin", is_staff=True)


def _persona_fixture(name: str, username: str):
    @pytest.fixture(name=name)
    def persona(db):
        return make_user(username)

    persona.__doc__ = f"The user {username!r} (see the module docstring)."
    return persona


# developer, staging_approver, prod_approver, outsider
for _name, _username in PERSONA_USERNAMES.items():
    globals()[_name] = _persona_fixture(_name, _username)


@pytest.fixture
def superuser(db):
    return make_superuser()


@pytest.fixture
def org(platform_staff, org_admin):
    return make_org(platform_staff, org_admin)


@pytest.fixture
def other_owner(db):
    """The owner of `other_org`: staff (the admin site lets them in), no membership in acme."""
    return make_user("globexowner", is_staff=True)


@pytest.fixture
def other_org(platform_staff, other_owner):
    """Globex: a second enterprise organization, owned by `other_owner`, no environments yet."""
    return tenancy_services.organization_create(
        actor=platform_staff,
        name="Globex",
        slug="globex",
        edition=Edition.ENTERPRISE,
        max_environments=5,
        owner=other_owner,
    )


@pytest.fixture
def stages(org, org_admin):
    """dev -> staging -> production, created through the services."""
    return make_stages(org, org_admin)


@pytest.fixture
def members(org, org_admin, stages, developer, staging_approver, prod_approver):
    return make_members(org, org_admin, stages, developer, staging_approver, prod_approver)


@pytest.fixture
def service_account(org, org_admin, members):
    return make_service_account(org, org_admin)


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


@pytest.fixture(scope="session")
def _celery_worker_session(django_db_setup, django_db_blocker):
    """One real Celery worker (in a thread, two pool threads) per test session, that is per
    pytest-xdist worker: started by the first test that asks for it, stopped at the end. Starting
    and stopping one per test cost more than most workflow tests themselves. It consumes both
    queues, the default one and the notifications one (production runs a pool for each)."""
    from celery.contrib.testing.worker import start_worker
    from django.conf import settings

    from planasonix_env.celery import app

    stack = ExitStack()
    queues = [settings.CELERY_TASK_DEFAULT_QUEUE, settings.NOTIFICATIONS_QUEUE]
    with django_db_blocker.unblock():
        app.control.purge()
        worker = stack.enter_context(
            start_worker(
                app, pool="threads", concurrency=2, perform_ping_check=False, shutdown_timeout=30, queues=queues
            )
        )
    yield worker
    with django_db_blocker.unblock():
        stack.close()


@pytest.fixture
def celery_worker_thread(transactional_db, _celery_worker_session):
    """A real Celery worker consuming from the configured broker (Redis in CI, the filesystem
    transport locally), shared by the session but clean for each test: the queue is purged before
    the test, and after it, before its rows are flushed, every task it queued is settled: running
    ones finish, and waiting ones (a retry's countdown, a message not yet fetched) never run."""
    from celery.signals import task_received
    from celery.worker import state

    from planasonix_env.celery import app

    received: list[str] = []

    def remember(sender=None, request=None, **kwargs):
        received.append(request.id)

    app.control.purge()
    task_received.connect(remember, weak=False)
    try:
        yield _celery_worker_session
    finally:
        try:
            _settle_worker(app, state, received)
        finally:
            task_received.disconnect(remember)


def _settle_worker(app, state, received: list[str], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        app.control.purge()
        state.revoked.update(received)  # checked by the worker before it runs a request
        if not state.reserved_requests:  # reserved ⊇ active; a revoked request leaves at once
            return
        if time.monotonic() > deadline:
            pytest.fail(f"the test left Celery tasks running after {timeout} s: {sorted(state.active_requests)}")
        time.sleep(0.02)
