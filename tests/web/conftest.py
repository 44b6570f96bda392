"""Screens fixtures: the runs setup (a sqlite pipeline bound in every stage) with v1 deployed in
development, a developer who may request promotions into staging and production, a staging
approver, two production approvers, and the demo's rules (staging: 1 approval; production: 2
approvals and a passing validation run)."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from apps.approvals import services as approvals
from apps.approvals.models import ApprovalRule
from apps.environments import permissions as perms
from apps.environments import services as env_services
from apps.runs import services as run_services
from apps.runs.models import RunStatus
from apps.tenancy import services as tenancy_services
from apps.tenancy.models import Role
from tests.runs.conftest import no_dispatch, run_setup  # noqa: F401  (fixtures)

User = get_user_model()


@pytest.fixture
def web(org, org_admin, stages, members, run_setup):  # noqa: F811
    developer = members["developer"]
    for environment in (stages["staging"], stages["production"]):
        for codename in (perms.VIEW, perms.REQUEST_PROMOTION):
            env_services.permission_grant(actor=org_admin, environment=environment, codename=codename, user=developer)
    second = User.objects.create_user("prodder2", "prodder2@example.com", "pw")
    tenancy_services.membership_add(actor=org_admin, organization=org, user=second, role=Role.MEMBER)
    for codename in (perms.VIEW, perms.APPROVE_PROMOTION):
        env_services.permission_grant(actor=org_admin, environment=stages["production"], codename=codename, user=second)
    for user in (developer, second):
        perms.forget(user)
    run_services.deploy_direct(
        actor=org_admin, pipeline=run_setup["pipeline"], environment=stages["development"], version=run_setup["version"]
    )
    approvals.rule_save(
        actor=org_admin, rule=ApprovalRule(environment=stages["staging"], name="staging review", required_approvals=1)
    )
    approvals.rule_save(
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
        **run_setup,
        **stages,
        "org": org,
        "org_admin": org_admin,
        "developer": developer,
        "staging_approver": members["staging_approver"],
        "prod_approver": members["prod_approver"],
        "prod_approver2": second,
    }


def validated_in_staging(w) -> None:
    """v1 validated in staging: a succeeded run there (what the production rule's gate needs)."""
    run = run_services.run_create(actor=w["org_admin"], pipeline=w["pipeline"], environment=w["staging"])
    run_services.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    return run


@pytest.fixture
def staging_request(web):
    """A pending request from the developer: v1 development → staging."""
    request, _ = approvals.promotion_request_create(
        actor=web["developer"],
        pipeline=web["pipeline"],
        version=web["version"],
        source=web["development"],
        reason="Ship the orders mart",
        ticket="OPS-1",
    )
    return request


@pytest.fixture
def production_request(web):
    """A pending request from the developer: v1 staging → production, with the validation run attached."""
    run = validated_in_staging(web)
    request, _ = approvals.promotion_request_create(
        actor=web["developer"],
        pipeline=web["pipeline"],
        version=web["version"],
        source=web["staging"],
        reason="Validated in staging",
        attached_runs=[run],
    )
    return request


@pytest.fixture
def client_for():
    def make(user, **kwargs):
        client = Client(**kwargs)
        client.force_login(user)
        return client

    return make
