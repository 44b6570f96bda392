"""A version's whole promotion walk through the approvals services: development to staging on one
approval, production refused until staging validated it (a succeeded run), two distinct production
approvers, and executing twice deploys once."""

import pytest

from apps.approvals import services
from apps.approvals.models import PromotionState
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.runs import services as run_services
from apps.runs.models import Deployment, Run, RunStatus

pytestmark = pytest.mark.django_db


def test_a_version_walks_from_development_to_production(promo, django_capture_on_commit_callbacks):
    p = promo
    with django_capture_on_commit_callbacks():
        request, created = services.promotion_request_create(
            actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["development"], reason="go"
        )
    assert created and request.state == PromotionState.PENDING and request.target == p["staging"]
    assert request.plan_hash.startswith("sha256:")
    with pytest.raises(PermissionDenied):
        services.promotion_approve(actor=p["developer"], request=request)
    with django_capture_on_commit_callbacks(execute=False):
        request = services.promotion_approve(actor=p["staging_approver"], request=request, comment="ok")
    assert request.state == PromotionState.APPROVED
    services.promotion_execute(request.pk)
    request.refresh_from_db()
    assert request.state == PromotionState.DEPLOYED, request.failure_reason
    assert Deployment.objects.filter(promotion_request_id=request.pk).count() == 1
    # production needs validation
    with pytest.raises(ValidationFailed) as err:
        services.promotion_request_create(
            actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["staging"]
        )
    assert "version" in err.value.fields
    run = run_services.run_create(actor=p["org_admin"], pipeline=p["pipeline"], environment=p["staging"])
    run_services.run_execute(run.pk)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    prod, _ = services.promotion_request_create(
        actor=p["developer"], pipeline=p["pipeline"], version=p["version"], source=p["staging"]
    )
    services.promotion_approve(actor=p["prod_approver"], request=prod)
    with pytest.raises(Conflict):
        services.promotion_approve(actor=p["prod_approver"], request=prod)
    prod = services.promotion_approve(actor=p["prod_approver2"], request=prod)
    assert prod.state == PromotionState.APPROVED
    services.promotion_execute(prod.pk)
    services.promotion_execute(prod.pk)
    prod.refresh_from_db()
    assert prod.state == PromotionState.DEPLOYED
    assert Deployment.objects.filter(environment=p["production"]).count() == 1
    assert Run.objects.count() == 1
