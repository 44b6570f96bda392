"""Promotion requests and decisions (apps/approvals/services/requests.py): where a request comes from
and goes to, who may request, which versions, duplicates and idempotency; separation of duties, one
decision each, rejections; cancel and retry; the history of decisions and transitions; bad input and
the edition.

On_commit callbacks (task wake-ups) are captured and not run unless a test says so."""

import pytest
from django.utils import timezone

from apps.approvals import services
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed
from apps.environments import permissions as perms
from apps.notifications.models import Event, Notification
from apps.runs import services as run_services
from apps.runs.models import Run, RunStatus

from .service_helpers import (
    approve,
    deploy_to_staging,
    execute,
    member,
    new_version,
    notified,
    production_request,
    request,
    run_ok,
)

pytestmark = pytest.mark.django_db

S = PromotionState


# --- requests: where from, where to, who, what --------------------------------------------------------------


def test_a_request_follows_the_environment_path(promo):
    p = promo
    with pytest.raises(ValidationFailed) as err:
        request(p, target=p["production"])
    assert "target" in err.value.fields and "staging" in err.value.message
    with pytest.raises(ValidationFailed) as err:
        request(p, source="staging", actor=p["org_admin"], target=p["development"])
    assert "target" in err.value.fields
    assert not PromotionRequest.objects.exists()
    # an administrator's rule may let development promote straight into production
    services.rule_save(actor=p["org_admin"], rule=p["production_rule"], extra_sources=[p["development"]])
    run_ok(p, "development")  # production's rule still wants a validation run in the source
    promotion = request(p, target=p["production"])
    assert (promotion.source, promotion.target, promotion.state) == (p["development"], p["production"], S.PENDING)


def test_the_target_defaults_to_the_next_stage(promo):
    promotion = request(promo)
    assert promotion.target == promo["staging"] and promotion.requested_by == promo["developer"]
    assert promotion.expires_at is not None
    # the people who may approve hear about it, in their inbox; nobody else does
    assert notified(promo["staging_approver"], Event.PROMOTION_REQUESTED)
    assert notified(promo["org_admin"], Event.PROMOTION_REQUESTED)
    assert not notified(promo["prod_approver"], Event.PROMOTION_REQUESTED)
    assert not notified(promo["developer"], Event.PROMOTION_REQUESTED)


def test_requesting_needs_request_promotion_on_the_target(promo, outsider):
    p = promo
    newcomer = member(
        p, "newcomer", {"development": list(perms.DEVELOPMENT_DEFAULTS), "staging": [perms.VIEW, perms.RUN]}
    )
    with pytest.raises(PermissionDenied) as err:
        request(p, actor=newcomer)
    assert "request_promotion" in err.value.message
    with pytest.raises(PermissionDenied):
        request(p, actor=outsider)
    with pytest.raises(PermissionDenied):
        request(p, actor=p["prod_approver"])  # cannot even see development
    assert not PromotionRequest.objects.exists()


def test_only_a_version_deployed_or_successfully_run_in_the_source(promo):
    p = promo
    v2 = new_version(p)
    with pytest.raises(ValidationFailed) as err:
        request(p, version=v2)
    assert "version" in err.value.fields
    failing = run_services.run_create(
        actor=p["org_admin"], pipeline=p["pipeline"], environment=p["development"], version=v2
    )
    Run.objects.filter(pk=failing.pk).update(status=RunStatus.FAILED, finished_at=timezone.now())
    with pytest.raises(ValidationFailed):
        request(p, version=v2)
    run_ok(p, "development", version=v2)
    assert request(p, version=v2).version == v2


def test_an_older_version_than_the_deployed_one_is_refused(promo):
    p = promo
    v2 = new_version(p)
    deploy_to_staging(p, v2)
    with pytest.raises(ValidationFailed) as err:
        request(p)  # v1, still deployed in development
    assert "version" in err.value.fields and "rollback" in err.value.message
    with pytest.raises(ValidationFailed) as err:
        request(p, version=v2)
    assert "already deployed" in err.value.message


def test_a_duplicate_open_request_is_a_conflict(promo):
    p = promo
    first = request(p)
    with pytest.raises(Conflict) as err:
        request(p)
    assert err.value.status == 409
    assert PromotionRequest.objects.count() == 1
    services.promotion_cancel(actor=p["developer"], request=first)
    assert request(p).pk != first.pk


def test_an_idempotency_key_replays_the_same_request(promo):
    p = promo
    first, created = services.promotion_request_create(
        actor=p["developer"],
        pipeline=p["pipeline"],
        version=p["version"],
        source=p["development"],
        reason="go",
        idempotency_key="key-1",
    )
    assert created
    requested = Notification.objects.filter(event=Event.PROMOTION_REQUESTED).count()
    assert requested == 2  # both staging approvers: the staging approver and the owner
    again, created = services.promotion_request_create(
        actor=p["developer"],
        pipeline=p["pipeline"],
        version=p["version"],
        source=p["development"],
        reason="go",
        idempotency_key="key-1",
    )
    assert not created and again.pk == first.pk
    with pytest.raises(Conflict) as err:
        services.promotion_request_create(
            actor=p["developer"],
            pipeline=p["pipeline"],
            version=p["version"],
            source=p["development"],
            reason="a different body",
            idempotency_key="key-1",
        )
    assert err.value.code == "idempotency_key_reused"
    assert PromotionRequest.objects.count() == 1
    assert Notification.objects.filter(event=Event.PROMOTION_REQUESTED).count() == requested
    # keys are per requester: another person's "key-1" is another request
    v2 = new_version(p)
    run_ok(p, "development", version=v2)
    other, created = services.promotion_request_create(
        actor=p["org_admin"], pipeline=p["pipeline"], version=v2, source=p["development"], idempotency_key="key-1"
    )
    assert created and other.pk != first.pk


# --- decisions --------------------------------------------------------------------------------------------------


def test_the_requester_cannot_approve_their_own_request(promo):
    p = promo
    promotion = request(p, actor=p["org_admin"])  # an owner holds every permission
    with pytest.raises(PermissionDenied) as err:
        services.promotion_approve(actor=p["org_admin"], request=promotion)
    assert "you cannot approve your own request" in err.value.message
    assert "you cannot approve your own request" in services.approval_blockers(p["org_admin"], promotion)
    assert not ApprovalDecision.objects.exists()


def test_an_approver_without_permission_is_refused(promo):
    p = promo
    promotion = production_request(p)
    with pytest.raises(PermissionDenied):
        services.promotion_approve(actor=p["staging_approver"], request=promotion)
    viewer = member(p, "viewer", {"production": [perms.VIEW, perms.REQUEST_PROMOTION]})
    with pytest.raises(PermissionDenied) as err:
        services.promotion_approve(actor=viewer, request=promotion)
    assert "approve_promotion" in err.value.message
    with pytest.raises(PermissionDenied):
        services.promotion_reject(actor=viewer, request=promotion, comment="no")
    assert not ApprovalDecision.objects.filter(request=promotion).exists()
    promotion.refresh_from_db()
    assert promotion.state == S.PENDING


def test_each_approver_decides_once(promo):
    p = promo
    promotion = production_request(p)
    approve(promotion, p["prod_approver"])
    with pytest.raises(Conflict) as err:
        approve(promotion, p["prod_approver"])
    assert err.value.code == "already_decided"
    with pytest.raises(Conflict):
        services.promotion_reject(actor=p["prod_approver"], request=promotion, comment="changed my mind")
    assert ApprovalDecision.objects.filter(request=promotion).count() == 1
    assert services.rule_status(promotion)[0]["approvals"] == 1


def test_a_rejection_needs_a_comment_and_ends_the_request(promo):
    p = promo
    promotion = request(p)
    for comment in ("", "   "):
        with pytest.raises(ValidationFailed) as err:
            services.promotion_reject(actor=p["staging_approver"], request=promotion, comment=comment)
        assert "comment" in err.value.fields
    promotion.refresh_from_db()
    assert promotion.state == S.PENDING
    promotion = services.promotion_reject(actor=p["staging_approver"], request=promotion, comment="wrong table")
    assert promotion.state == S.REJECTED
    decision = ApprovalDecision.objects.get(request=promotion)
    assert (decision.approver, decision.decision, decision.comment) == (p["staging_approver"], "reject", "wrong table")
    assert notified(p["developer"], Event.PROMOTION_REJECTED)
    with pytest.raises(Conflict):
        approve(promotion, p["staging_approver"])


# --- history -----------------------------------------------------------------------------------------------------


def test_every_decision_and_transition_is_in_the_history_with_the_acting_user(promo):
    p = promo
    promotion = production_request(p)
    approve(promotion, p["prod_approver"], p["prod_approver2"])
    promotion = execute(promotion)
    rows = list(promotion.history.order_by("history_date", "history_id"))
    steps = [(row.state, row.history_user, row.history_change_reason) for row in rows]
    assert steps[0] == (S.PENDING, p["developer"], "requested")
    assert (S.APPROVED, p["prod_approver2"], "approved: every rule is met") in steps
    assert [state for state, _, _ in steps][-2:] == [S.DEPLOYING, S.DEPLOYED]
    decisions = ApprovalDecision.history.filter(request_id=promotion.pk).order_by("history_date")
    assert [(d.approver_id, d.history_user, d.decision) for d in decisions] == [
        (p["prod_approver"].pk, p["prod_approver"], "approve"),
        (p["prod_approver2"].pk, p["prod_approver2"], "approve"),
    ]
    # cancel, reject and retry are recorded with whoever did them
    v2 = new_version(p)
    run_ok(p, "development", version=v2)
    cancelled = services.promotion_cancel(actor=p["org_admin"], request=request(p, version=v2))
    assert (cancelled.history.first().history_user, cancelled.history.first().state) == (p["org_admin"], S.CANCELLED)
    rejected = services.promotion_reject(actor=p["staging_approver"], request=request(p, version=v2), comment="no")
    row = rejected.history.first()
    assert (row.history_user, row.state, row.history_change_reason) == (
        p["staging_approver"],
        S.REJECTED,
        "rejected: no",
    )
    decision = ApprovalDecision.history.filter(request_id=rejected.pk).get()
    assert (decision.history_user, decision.decision, decision.comment) == (p["staging_approver"], "reject", "no")
    PromotionRequest.objects.filter(pk=rejected.pk).update(state=S.FAILED)
    retried = services.promotion_retry(actor=p["developer"], request=rejected)
    assert (retried.history.first().history_user, retried.history.first().state) == (p["developer"], S.APPROVED)


def test_cancel_is_for_the_requester_or_a_manager(promo):
    p = promo
    promotion = request(p)
    with pytest.raises(PermissionDenied):
        services.promotion_cancel(actor=p["staging_approver"], request=promotion)
    promotion = services.promotion_cancel(actor=p["developer"], request=promotion, comment="not needed")
    assert promotion.state == S.CANCELLED
    assert promotion.history.first().history_change_reason == "cancelled: not needed"


# --- bad input, editions, bookkeeping ---------------------------------------------------------------------------


def test_bad_request_input_is_refused_naming_the_field(promo):
    p = promo
    from apps.pipelines import services as pipeline_services

    other = pipeline_services.pipeline_create(actor=p["org_admin"], project=p["project"], name="Other")
    pipeline_services.pipeline_version_create(actor=p["org_admin"], pipeline=other, graph=p["version"].graph)
    foreign_run = run_services.run_create(actor=p["org_admin"], pipeline=other, environment=p["development"])
    cases = [
        ({"reason": "x" * 4001}, "reason"),
        ({"ticket": "T" * 101}, "ticket"),
        ({"compare_url": "not a url"}, "compare_url"),
        ({"attached_runs": [foreign_run]}, "attached_runs"),
        ({"version": other.versions.get()}, "version"),
    ]
    for kwargs, field in cases:
        with pytest.raises(ValidationFailed) as err:
            request(p, **kwargs)
        assert field in err.value.fields, (field, err.value.fields)
    assert not PromotionRequest.objects.exists()
    attached = run_ok(p, "development")
    promotion = request(p, reason="x" * 4000, attached_runs=[attached], compare_url="https://git.example.com/c/1")
    assert list(promotion.attached_runs.all()) == [attached]


def test_overlong_decision_texts_are_refused_naming_the_field(promo, freeze):
    p = promo
    promotion = production_request(p)
    with pytest.raises(ValidationFailed) as err:
        services.promotion_approve(actor=p["prod_approver"], request=promotion, comment="x" * 4001)
    assert "comment" in err.value.fields
    with pytest.raises(ValidationFailed) as err:
        services.promotion_reject(actor=p["prod_approver"], request=promotion, comment="x" * 4001)
    assert "comment" in err.value.fields
    with pytest.raises(ValidationFailed) as err:
        services.promotion_override_freeze(actor=p["org_admin"], request=promotion, reason="x" * 501)
    assert "reason" in err.value.fields
    promotion.refresh_from_db()
    assert promotion.state == S.PENDING and not promotion.freeze_override_requested_by
    assert not ApprovalDecision.objects.filter(request=promotion).exists()


def test_promotions_need_the_enterprise_edition(platform_staff, org_admin):
    from apps.environments.models import Environment
    from apps.pipelines import services as pipeline_services
    from apps.tenancy import services as tenancy_services
    from apps.tenancy.models import Edition
    from tests.runs.conftest import GRAPH

    small = tenancy_services.organization_create(
        actor=platform_staff, name="Small", slug="small", edition=Edition.STANDARD, owner=org_admin
    )
    only = Environment.objects.get(organization=small)
    project = pipeline_services.project_create(actor=org_admin, organization=small, name="Solo")
    pipeline = pipeline_services.pipeline_create(actor=org_admin, project=project, name="Orders")
    version = pipeline_services.pipeline_version_create(actor=org_admin, pipeline=pipeline, graph=GRAPH)
    run_services.deploy_direct(actor=org_admin, pipeline=pipeline, environment=only, version=version)
    with pytest.raises((PermissionDenied, ValidationFailed)) as err:
        services.promotion_request_create(actor=org_admin, pipeline=pipeline, version=version, source=only)
    assert "edition" in err.value.message
    assert not PromotionRequest.objects.exists()


# --- rules changing under open requests --------------------------------------------------------------------------


def test_retry_refused_while_a_newer_request_promotes_the_same_version(promo):
    """A failed request cannot come back while another open request promotes the same version
    (one open request per version: a database constraint, said here with a clear message)."""
    p = promo
    failed = request(p)
    PromotionRequest.objects.filter(pk=failed.pk).update(state=S.FAILED)
    failed.refresh_from_db()
    newer = request(p)
    with pytest.raises(Conflict) as err:
        services.promotion_retry(actor=p["developer"], request=failed)
    assert f"#{newer.pk}" in err.value.message and err.value.code == "duplicate_request"
    assert PromotionRequest.objects.get(pk=failed.pk).state == "failed"
