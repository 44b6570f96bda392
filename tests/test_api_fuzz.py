"""Property-based fuzzing of the whole REST API from its own OpenAPI schema (schemathesis 4).

Operations are discovered from the served schema, so every endpoint added later is fuzzed too.
Each operation is its own pytest item; requests go in-process to the WSGI application as the
organization's owner through an `admin`-scoped API key, with positive and negative data.

Enforced on every response: no 5xx (`not_a_server_error`), documented status code and content
type, body conforming to the documented schema (`response_schema_conformance`, which covers the
error shape documented for error statuses), documented headers, invalid data rejected with a 4xx
(`negative_data_rejection`), requests without or with bad credentials refused (`ignored_auth`),
and undocumented methods answered with 405 (`unsupported_method`).

Left out, deliberately: `positive_data_acceptance` — schema-valid input may still be refused with
400 by rules that OpenAPI cannot express (a slug that names no organization, a cron expression
that does not parse, an environment limit), and the API is right to do so. The stateful-only
checks (`use_after_free`, `ensure_resource_availability`, `object_level_authorization`) need a
recorded scenario and have nothing to check on a single call.

Every example runs inside a savepoint that is rolled back, so examples do not depend on each
other and a failure reproduces from its example alone; the throttle cache is cleared between
examples (429 is tested on its own in tests/core/test_errors.py).

The error statuses are documented by `apps.core.openapi.AutoSchema` (the schema class) and
unreadable filter values are refused by `apps.core.api.StrictFilterBackend`; both must be
configured in settings for this to pass."""

import os

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings
from schemathesis.checks import load_all_checks
from schemathesis.specs.openapi import checks as openapi_checks

from apps.environments import services as env_services
from apps.environments.models import FreezeKind
from apps.notifications import services as notification_services
from apps.notifications.models import ChannelKind, Event
from apps.tenancy import services as tenancy_services
from apps.variables import services as variable_services
from planasonix_env.wsgi import application
from tests.conftest import make_acme

# Examples per operation in the random ("fuzzing") phase; the coverage and examples phases add a
# bounded number of boundary cases on top. Every operation is fuzzed in every run: `make test`
# takes DEFAULT_EXAMPLES each, `make test-deep` (FUZZ_EXAMPLES=100) many more. Lower the default
# before the run outgrows CI, rather than excluding operations.
DEFAULT_EXAMPLES = 10
MAX_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)

load_all_checks()

schema = schemathesis.openapi.from_wsgi("/api/v1/schema/", application)
# Credentials come from the fixture below; generated security parameters would only fight them.
schema.config.generation.update(with_security_parameters=False, max_examples=MAX_EXAMPLES, deterministic=True)

EXCLUDED_CHECKS = [
    openapi_checks.positive_data_acceptance,
    openapi_checks.use_after_free,
    openapi_checks.ensure_resource_availability,
]


@pytest.fixture
def keep_test_connection():
    """Requests go straight to the WSGI handler, whose request_started/finished signals close the
    database connection (CONN_MAX_AGE=0 on PostgreSQL) and with it the test's transaction. Django's
    own test client disconnects the same receiver for the same reason."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture(scope="module")
def fuzz_token(module_db):
    """The acme personas plus one of everything the API lists, so small generated ids hit real rows,
    built once for the module (every example rolls its own changes back); the admin-scoped bearer
    token of the organization's owner."""
    return module_db(_build_fuzz_world)


def _build_fuzz_world() -> str:
    acme = make_acme()
    org, org_admin, stages = acme["org"], acme["org_admin"], acme["stages"]
    channel, _ = notification_services.channel_create(
        actor=org_admin,
        organization=org,
        name="ops",
        kind=ChannelKind.EMAIL,
        target="ops@example.com",
        events=[Event.RUN_FAILED],
    )
    env_services.freeze_window_create(
        actor=org_admin,
        environment=stages["production"],
        kind=FreezeKind.RECURRING,
        cron="0 22 * * 5",
        duration_minutes=60,
        timezone="UTC",
        reason="weekend",
    )
    notification_services.emit(
        Event.RUN_FAILED, {"environment": "production"}, organization=org, channels=[channel], users=[org_admin]
    )
    # A personal override of the key's owner, so the personal-overrides detail ids hit a row.
    variable = variable_services.variable_create(
        actor=org_admin, organization=org, name="batch_size", type="integer", default_value=10
    )
    variable_services.personal_override_set(
        actor=org_admin, variable=variable, environment=stages["development"], value=15
    )
    _, token = tenancy_services.api_key_create(actor=org_admin, organization=org, name="fuzzer", scopes=["admin"])
    return token


@pytest.fixture
def fuzz_world(keep_test_connection, db, fuzz_token):
    return fuzz_token


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    derandomize=True,
    database=None,
    deadline=None,
    # The database state is built once per module and every example rolls its own changes back,
    # so sharing function-scoped fixtures across examples is what we want.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
@pytest.mark.django_db
def test_api_conforms_to_its_schema(case, fuzz_world):
    cache.clear()
    with transaction.atomic():
        try:
            case.call_and_validate(headers={"Authorization": f"Bearer {fuzz_world}"}, excluded_checks=EXCLUDED_CHECKS)
        finally:
            transaction.set_rollback(True)
