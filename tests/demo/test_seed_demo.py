from io import StringIO

import pytest
from django.core.management import call_command

from apps.environments import permissions as perms
from apps.environments.models import Environment, EnvironmentUserObjectPermission
from apps.tenancy.models import Membership, Organization


@pytest.mark.django_db
def test_seed_demo_builds_the_demo_and_is_idempotent():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    counts = (
        Organization.objects.count(),
        Environment.objects.count(),
        Membership.objects.count(),
        EnvironmentUserObjectPermission.objects.count(),
    )
    call_command("seed_demo", stdout=StringIO())
    assert counts == (
        Organization.objects.count(),
        Environment.objects.count(),
        Membership.objects.count(),
        EnvironmentUserObjectPermission.objects.count(),
    )
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
    assert not perms.may(approver2, perms.APPROVE_PROMOTION, stage["staging"])

    production = stage["production"].policy
    assert production.locked and production.forbid_plaintext_secrets and not production.allow_runtime_overrides
    assert stage["development"].policy.log_level == "DEBUG"
    assert [e.slug for e in Environment.objects.order_by("position")] == ["development", "staging", "production"]
    assert stage["development"].promotes_to == stage["staging"]
    assert stage["staging"].promotes_to == stage["production"]
