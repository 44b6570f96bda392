"""Promotion fixtures: the runs setup (a sqlite pipeline bound in every stage), v1 deployed in
development, a developer who may request promotions, two production approvers and the demo's rules
(staging: 1 approval; production: 2 approvals, validation required, no self-approval); a freeze
window over production now (`freeze`); the sweeps' task wake-ups recorded instead of sent
(`enqueued`)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from apps.approvals import services
from apps.approvals.models import ApprovalRule
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.environments.models import FreezeKind
from apps.runs import services as run_services
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Role
from tests.runs.conftest import GRAPH, make_warehouse, run_setup  # noqa: F401  (fixtures and data)

User = get_user_model()


@pytest.fixture
def prod_approver2(org, org_admin, stages, members):
    user = User.objects.create_user("prodder2", "prodder2@example.com", "pw")
    tenancy_services.membership_add(actor=org_admin, organization=org, user=user, role=Role.MEMBER)
    for codename in (perms.VIEW, perms.APPROVE_PROMOTION):
        env_services.permission_grant(actor=org_admin, environment=stages["production"], codename=codename, user=user)
    perms.forget(user)
    return user


@pytest.fixture
def promo(org, org_admin, stages, members, prod_approver2, request):
    """Everything a promotion test needs, as a dict."""
    setup = request.getfixturevalue("run_setup")
    developer = members["developer"]
    for environment in (stages["staging"], stages["production"]):
        for codename in (perms.VIEW, perms.REQUEST_PROMOTION):
            env_services.permission_grant(actor=org_admin, environment=environment, codename=codename, user=developer)
    perms.forget(developer)
    run_services.deploy_direct(
        actor=org_admin, pipeline=setup["pipeline"], environment=stages["development"], version=setup["version"]
    )
    staging_rule = services.rule_save(
        actor=org_admin,
        rule=ApprovalRule(environment=stages["staging"], name="staging review", required_approvals=1),
    )
    production_rule = services.rule_save(
        actor=org_admin,
        rule=ApprovalRule(
            environment=stages["production"],
            name="production review",
            required_approvals=2,
            require_validation=True,
            validation_max_age_hours=24,
        ),
    )
    return {
        **setup,
        **stages,
        "developer": developer,
        "staging_approver": members["staging_approver"],
        "prod_approver": members["prod_approver"],
        "prod_approver2": prod_approver2,
        "org_admin": org_admin,
        "staging_rule": staging_rule,
        "production_rule": production_rule,
    }


@pytest.fixture
def enqueued(monkeypatch):
    """Task wake-ups the services send straight away (the sweeps), recorded instead of sent."""
    calls = []
    monkeypatch.setattr(services.base, "_enqueue", lambda task, args, countdown=None: calls.append((task.name, args)))
    return calls


@pytest.fixture
def freeze(promo):
    """A one-off freeze window over production, from an hour ago to an hour from now."""
    now = timezone.now()
    return env_services.freeze_window_create(
        actor=promo["org_admin"],
        environment=promo["production"],
        kind=FreezeKind.ONE_OFF,
        starts_at=now - timedelta(hours=1),
        ends_at=now + timedelta(hours=1),
        reason="quarter close",
    )
