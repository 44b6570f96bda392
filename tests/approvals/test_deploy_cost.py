"""What a deploy costs: creating, approving and executing a promotion in a bounded number of
queries that does not grow with the target's configuration, the configuration a deployment ran
with stored on it once (so the next plan's "before" is read, not rebuilt), and one stored plan
however many history rows a promotion writes."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.approvals import services
from apps.approvals.models import PromotionRequest, PromotionState
from apps.core.models import FrozenDocument
from apps.resolution import engine, snapshot
from apps.runs import services as run_services
from apps.runs.models import Deployment
from apps.tenancy import revisions
from apps.variables.models import Variable, VariableOverride

from .service_helpers import approve, deploy_to_staging, new_version, request, run_ok

# Statements other than the savepoints of the test's own transaction (each step is its own
# transaction in production). What execute_promotion's remain: step 1 (the locked request with its
# plan, configuration revision and freeze check; its decisions; the active deployment; the rules and
# their approvers' grants; the `deploying` row and its history row), step 2 (the lock, the active
# deployment, the new one and its history row, the schedules and the triggers to switch on, the
# `deployed` row and its history row) and the deployed notice (channels, inbox rows, e-mails through
# the outbox).
EXECUTE_MAX_QUERIES = 20
# Superseding a deployment also writes the previous one (is_active off) and its history row.
EXECUTE_OVER_A_DEPLOYMENT_MAX_QUERIES = EXECUTE_MAX_QUERIES + 2
# The last (only) approval: the locked request with its plan and configuration revision, its
# decisions, the approver's role and grants, the rules, the decision and its history row, the
# `approved` row and its history row, the approved notice.
APPROVE_MAX_QUERIES = 13
# Creating resolves the target afresh (its rows, once), checks the source, the path and the rules,
# validates the row, stores the plan and the configuration after, and notifies the approvers.
CREATE_MAX_QUERIES = 30
BIG = 10_000


def _statements(captured) -> list[str]:
    return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


def _counted(call):
    with CaptureQueriesContext(connection) as captured:
        result = call()
    return result, _statements(captured)


def _within(statements: list[str], budget: int, what: str) -> None:
    assert len(statements) <= budget, f"{what}: {len(statements)} statements\n" + "\n".join(
        sql[:160] for sql in statements
    )


def _documents_written(statements: list[str]) -> int:
    # PostgreSQL: INSERT ... ON CONFLICT DO NOTHING; SQLite: INSERT OR IGNORE.
    return sum(1 for sql in statements if sql.startswith("INSERT") and 'INTO "core_frozendocument"' in sql[:60])


def _grow_target(p, size: int) -> None:
    """`size` more organization variables, each overridden in staging (the target)."""
    organization = p["staging"].organization
    variables = Variable.objects.bulk_create(
        [
            Variable(organization=organization, name=f"bulk_{i:05d}", type="string", default_value=f"d{i}")
            for i in range(size)
        ],
        batch_size=2000,
    )
    VariableOverride.objects.bulk_create(
        [VariableOverride(variable=v, environment=p["staging"], value=f"s{i}") for i, v in enumerate(variables)],
        batch_size=2000,
    )
    revisions.bump(organization.pk)


@pytest.mark.parametrize("size", [0, BIG], ids=["demo", "10k-variables"])
def test_create_approve_and_execute_are_bounded_whatever_the_target_size(promo, size):
    p = promo
    _grow_target(p, size)
    # The first deploy into staging, then a newer version over it (whose plan reads "before").
    for version, execute_budget in ((p["version"], EXECUTE_MAX_QUERIES), (None, EXECUTE_OVER_A_DEPLOYMENT_MAX_QUERIES)):
        if version is None:
            version = new_version(p)
            run_ok(p, "development", version=version)
        promotion, create = _counted(lambda v=version: request(p, version=v))
        assert len(promotion.plan["config_after"]["variables"]) >= size
        promotion, approval = _counted(lambda r=promotion: approve(r, p["staging_approver"]))
        assert promotion.state == PromotionState.APPROVED
        _none, execution = _counted(lambda r=promotion: services.promotion_execute(r.pk))
        promotion.refresh_from_db()
        assert promotion.state == PromotionState.DEPLOYED, promotion.failure_reason
        _within(create, CREATE_MAX_QUERIES, f"create v{version.number}")
        _within(approval, APPROVE_MAX_QUERIES, f"approve v{version.number}")
        _within(execution, execute_budget, f"execute v{version.number}")
        # The plan and the configuration after are stored once, when the plan is frozen.
        assert _documents_written(create) == 2
        assert _documents_written(approval) == _documents_written(execution) == 0


def test_execute_promotion_is_bounded_and_stores_the_deployed_configuration(promo):
    p = promo
    promotion = approve(request(p), p["staging_approver"])
    assert promotion.state == PromotionState.APPROVED
    _none, statements = _counted(lambda: services.promotion_execute(promotion.pk))
    promotion.refresh_from_db()
    assert promotion.state == PromotionState.DEPLOYED, promotion.failure_reason
    _within(statements, EXECUTE_MAX_QUERIES, "execute")
    deployment = Deployment.objects.get(pk=promotion.deployment_id)
    assert deployment.resolved == promotion.plan["config_after"]
    assert deployment.resolved_document_id == promotion.plan["config_after_document"]


def test_the_next_plan_reads_before_from_the_deployment_not_from_history(promo, monkeypatch):
    p = promo
    deploy_to_staging(p)
    run_ok(p, "staging")
    deployed = Deployment.objects.get(pipeline=p["pipeline"], environment=p["staging"], is_active=True)

    def no_history(**kwargs):
        raise AssertionError("the plan rebuilt 'before' from history")

    monkeypatch.setattr(snapshot, "load_as_of", no_history)
    monkeypatch.setattr(engine, "load_as_of", no_history)
    version = new_version(p)
    run_ok(p, "development", version=version)
    second = request(p, version=version)
    assert second.plan["config_before"] == deployed.resolved
    second = approve(second, p["staging_approver"])
    assert services.promotion_execute(second.pk).state == PromotionState.DEPLOYED


def test_a_deployment_made_before_configurations_were_stored_is_rebuilt_once_and_kept(promo, monkeypatch):
    p = promo
    deploy_to_staging(p)
    deployed = Deployment.objects.get(pipeline=p["pipeline"], environment=p["staging"], is_active=True)
    stored = deployed.resolved
    Deployment.objects.filter(pk=deployed.pk).update(resolved_document=None)  # as older deployments are
    version = new_version(p)
    run_ok(p, "development", version=version)
    second = request(p, version=version)
    assert second.plan["config_before"] == stored  # rebuilt from history: what staging had then
    deployed.refresh_from_db()
    assert deployed.resolved_document_id is not None

    def no_history(**kwargs):
        raise AssertionError("rebuilt from history again")

    monkeypatch.setattr(engine, "load_as_of", no_history)
    assert run_services.deployed_configuration(Deployment.objects.get(pk=deployed.pk)) == stored


def test_history_rows_of_a_promotion_share_one_stored_plan(promo):
    p = promo
    promotion = deploy_to_staging(p)
    rows = PromotionRequest.history.filter(id=promotion.pk)
    assert rows.count() >= 3
    digests = set(rows.values_list("plan_document_id", flat=True))
    assert digests == {promotion.plan_document_id}
    assert FrozenDocument.objects.filter(digest__in=digests).count() == 1
