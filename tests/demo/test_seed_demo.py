from io import StringIO

import pytest
from django.core.management import call_command

from apps.approvals.models import ApprovalRule
from apps.environments import permissions as perms
from apps.environments.models import Environment, EnvironmentUserObjectPermission
from apps.runs.models import Deployment, Schedule
from apps.tenancy.models import Membership, Organization
from apps.variables.models import Variable, VariableOverride


@pytest.fixture(autouse=True)
def _demo_files_in_tmp(settings, tmp_path):
    """The demo's SQLite 'warehouses' go to a temporary folder, not the developer's var/."""
    settings.VAR_DIR = tmp_path
    settings.SQLITE_CONNECTION_ROOT = str(tmp_path / "sqlite")


def _counts():
    return {
        model.__name__: model.objects.count()
        for model in (
            Organization,
            Environment,
            Membership,
            EnvironmentUserObjectPermission,
            Variable,
            VariableOverride,
            Deployment,
            Schedule,
            ApprovalRule,
        )
    }


@pytest.mark.django_db
def test_seed_demo_builds_the_demo_and_is_idempotent():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    counts = _counts()
    rule_history = sum(rule.history.count() for rule in ApprovalRule.objects.all())
    call_command("seed_demo", stdout=StringIO())
    assert _counts() == counts
    assert counts["ApprovalRule"] == 2
    assert sum(rule.history.count() for rule in ApprovalRule.objects.all()) == rule_history
    text = out.getvalue()
    for login in ("admin", "dev", "approver1", "approver2"):
        assert login in text
    assert "Development → Staging → Production" in text


@pytest.mark.django_db
def test_demo_users_hold_the_documented_rights():
    from django.contrib.auth import get_user_model

    call_command("seed_demo", stdout=StringIO())
    users = {u.username: u for u in get_user_model().objects.all()}
    stage = {e.slug: e for e in Environment.objects.all()}
    dev, approver1, approver2 = users["dev"], users["approver1"], users["approver2"]

    assert perms.may(dev, perms.RUN, stage["development"])
    assert perms.may(dev, perms.REQUEST_PROMOTION, stage["production"])
    assert not perms.may(dev, perms.APPROVE_PROMOTION, stage["production"])
    assert not perms.may(dev, perms.CHANGE_CONFIG, stage["production"])
    assert perms.may(approver1, perms.APPROVE_PROMOTION, stage["staging"])
    assert perms.may(approver2, perms.APPROVE_PROMOTION, stage["production"])
    assert perms.may(approver2, perms.APPROVE_PROMOTION, stage["staging"])
    assert perms.may(approver1, perms.APPROVE_PROMOTION, stage["production"])
    for approver in (approver1, approver2):
        assert not perms.may(approver, perms.REQUEST_PROMOTION, stage["production"])
        assert not perms.may(approver, perms.APPROVE_PROMOTION, stage["development"])

    production = stage["production"].policy
    assert production.locked and production.forbid_plaintext_secrets and not production.allow_runtime_overrides
    assert stage["development"].policy.log_level == "DEBUG"
    assert [e.slug for e in Environment.objects.order_by("position")] == ["development", "staging", "production"]
    assert stage["development"].promotes_to == stage["staging"]
    assert stage["staging"].promotes_to == stage["production"]


@pytest.mark.django_db
def test_demo_has_the_documented_approval_rules():
    call_command("seed_demo", stdout=StringIO())
    rules = {rule.environment.slug: rule for rule in ApprovalRule.objects.select_related("environment")}
    assert set(rules) == {"staging", "production"}
    staging, production = rules["staging"], rules["production"]
    assert staging.project is None and staging.is_active and staging.required_approvals == 1
    assert not staging.allow_self_approval and not staging.require_validation
    assert production.project is None and production.is_active and production.required_approvals == 2
    assert production.require_validation and production.validation_max_age_hours == 24
    assert not production.allow_self_approval
    assert production.history.get().history_user.username == "admin"


@pytest.mark.django_db
def test_a_person_can_walk_the_demo_version_from_development_to_production():
    """dev requests, approver1 (and for production approver2) approve, the worker deploys."""
    from apps.approvals import services as approvals
    from apps.approvals.models import PromotionState
    from apps.core.errors import PermissionDenied, ValidationFailed
    from apps.demo.services import seed_demo
    from apps.runs import services as runs
    from apps.runs.models import RunStatus

    demo = seed_demo()
    seed_demo()
    users, stage, pipeline = demo["users"], demo["stages"], demo["pipeline"]
    dev, approver1, approver2 = users["dev"], users["approver1"], users["approver2"]
    version = pipeline.versions.get()

    to_staging, created = approvals.promotion_request_create(
        actor=dev, pipeline=pipeline, version=version, source=stage["development"], reason="ready for staging"
    )
    assert created and to_staging.target == stage["staging"] and to_staging.state == PromotionState.PENDING
    with pytest.raises(PermissionDenied):
        approvals.promotion_approve(actor=dev, request=to_staging)
    to_staging = approvals.promotion_approve(actor=approver1, request=to_staging, comment="ok for staging")
    assert to_staging.state == PromotionState.APPROVED
    approvals.promotion_execute(to_staging.pk)
    to_staging.refresh_from_db()
    assert to_staging.state == PromotionState.DEPLOYED, to_staging.failure_reason
    assert runs.active_deployment(pipeline, stage["staging"]).version == version

    # production needs a passing staging run of the version first
    with pytest.raises(ValidationFailed):
        approvals.promotion_request_create(actor=dev, pipeline=pipeline, version=version, source=stage["staging"])
    run = runs.run_execute(runs.run_create(actor=dev, pipeline=pipeline, environment=stage["staging"]).pk)
    assert run.status == RunStatus.SUCCEEDED, run.error

    to_production, _ = approvals.promotion_request_create(
        actor=dev, pipeline=pipeline, version=version, source=stage["staging"], reason="validated in staging"
    )
    assert to_production.target == stage["production"]
    to_production = approvals.promotion_approve(actor=approver1, request=to_production)
    assert to_production.state == PromotionState.PENDING
    to_production = approvals.promotion_approve(actor=approver2, request=to_production)
    assert to_production.state == PromotionState.APPROVED
    approvals.promotion_execute(to_production.pk)
    to_production.refresh_from_db()
    assert to_production.state == PromotionState.DEPLOYED, to_production.failure_reason
    assert runs.active_deployment(pipeline, stage["production"]).version == version
