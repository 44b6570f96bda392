"""What a deploy costs: execute_promotion in a bounded number of queries, the configuration a
deployment ran with stored on it once (so the next plan's "before" is read, not rebuilt), and one
stored plan however many history rows a promotion writes."""

from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.approvals import services
from apps.approvals.models import PromotionRequest, PromotionState
from apps.core.models import FrozenDocument
from apps.resolution import snapshot
from apps.runs.models import Deployment

from .service_helpers import approve, deploy_to_staging, new_version, request, run_ok

# Statements other than the savepoints of the test's own transaction (2 steps, each its own
# transaction in production). Aim: 20; what remains is the rules' re-check (rules, approvers'
# grants) and the audit rows of the two steps.
EXECUTE_MAX_QUERIES = 27  # 26, plus the deployed notice e-mailed through the outbox (one Delivery row)


def test_execute_promotion_is_bounded_and_stores_the_deployed_configuration(promo):
    p = promo
    promotion = approve(request(p), p["staging_approver"])
    assert promotion.state == PromotionState.APPROVED
    with CaptureQueriesContext(connection) as captured:
        services.promotion_execute(promotion.pk)
    promotion.refresh_from_db()
    assert promotion.state == PromotionState.DEPLOYED, promotion.failure_reason
    statements = [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]
    assert len(statements) <= EXECUTE_MAX_QUERIES, "\n".join(sql[:160] for sql in statements)
    deployment = Deployment.objects.get(pk=promotion.deployment_id)
    assert deployment.resolved == promotion.plan["config_after"]
    assert deployment.resolved_document_id is not None


def test_the_next_plan_reads_before_from_the_deployment_not_from_history(promo, monkeypatch):
    p = promo
    deploy_to_staging(p)
    run_ok(p, "staging")
    deployed = Deployment.objects.get(pipeline=p["pipeline"], environment=p["staging"], is_active=True)

    def no_history(**kwargs):
        raise AssertionError("the plan rebuilt 'before' from history")

    monkeypatch.setattr(snapshot, "load_as_of", no_history)
    from apps.resolution import engine

    monkeypatch.setattr(engine, "load_as_of", no_history)
    version = new_version(p)
    run_ok(p, "development", version=version)
    second = request(p, version=version)
    assert second.plan["config_before"] == deployed.resolved


def test_history_rows_of_a_promotion_share_one_stored_plan(promo):
    p = promo
    promotion = deploy_to_staging(p)
    rows = PromotionRequest.history.filter(id=promotion.pk)
    assert rows.count() >= 3
    digests = set(rows.values_list("plan_document_id", flat=True))
    assert digests == {promotion.plan_document_id}
    assert FrozenDocument.objects.filter(digest__in=digests).count() == 1
