"""The data diff gate end to end: a staging run that raises a column's null share past its
expectation, or retypes a column, blocks the promotion into production naming the column; fixing
the data and re-running unblocks it. The plan and the request page carry the per-column diff."""

import copy
import sqlite3

import pytest
from django.test import Client
from django.urls import reverse

from apps.approvals import services
from apps.core.errors import ValidationFailed
from apps.pipelines import services as pipeline_services
from tests.runs.conftest import GRAPH

from .service_helpers import deploy_to_production, deploy_to_staging, request, run_ok

EXPECTATIONS = {"amount": {"max_null_share": 0.05, "max_change": {"sum": 50}}, "customer_id": {"not_null": True}}


def _version(p, marker: str):
    graph = copy.deepcopy(GRAPH)
    graph["nodes"][0]["query"] = graph["nodes"][0]["query"].replace(" ORDER BY", f" WHERE '{marker}' <> '' ORDER BY")
    graph["nodes"][1]["expectations"] = EXPECTATIONS
    return pipeline_services.pipeline_version_create(actor=p["org_admin"], pipeline=p["pipeline"], graph=graph)


def _staging_sql(p, sql: str) -> None:
    with sqlite3.connect(p["paths"]["staging"]["source"]) as conn:
        conn.execute(sql)


def _blocked(p, version) -> str:
    with pytest.raises(ValidationFailed) as err:
        request(p, source="staging", version=version)
    assert "version" in err.value.fields
    return " ".join(err.value.fields["version"])


@pytest.mark.django_db(transaction=True)
def test_a_column_past_its_expectation_blocks_until_the_data_is_fixed(promo):
    p = promo
    v2 = _version(p, "v2")
    deploy_to_production(p, v2)
    baseline = run_ok(p, "production", version=v2)
    assert baseline.metrics["orders_out"]["columns"]["amount"]["null_count"] == 0
    rule = p["production_rule"]
    rule.require_data_diff = True
    services.rule_save(actor=p["org_admin"], rule=rule)

    v3 = _version(p, "v3")
    deploy_to_staging(p, v3)
    _staging_sql(p, "CREATE TABLE saved AS SELECT * FROM orders")

    # A fifth of the amounts go missing: null share 0.2 > 0.05.
    _staging_sql(p, "UPDATE orders SET amount = NULL WHERE order_id <= 20")
    broken = run_ok(p, "staging", version=v3)
    assert broken.baseline["passed"] is False
    message = _blocked(p, v3)
    assert f"run #{broken.pk}" in message and "orders_out.amount: null share 0.2 > 0.05" in message
    assert "customer_id" not in message

    # customer_id becomes text: a retyped column blocks too, named.
    _staging_sql(p, "UPDATE orders SET amount = (SELECT amount FROM saved WHERE saved.order_id = orders.order_id)")
    _staging_sql(p, "UPDATE orders SET customer_id = 'c' || customer_id")
    retyped = run_ok(p, "staging", version=v3)
    assert retyped.metrics["orders_out"]["columns"]["customer_id"]["type"] == "text"
    message = _blocked(p, v3)
    assert "orders_out.customer_id: retyped integer → text" in message and "amount" not in message

    # The data is fixed and the run repeated: the promotion goes through, the plan carries the diff.
    _staging_sql(p, "DELETE FROM orders")
    _staging_sql(p, "INSERT INTO orders SELECT * FROM saved")
    fixed = run_ok(p, "staging", version=v3)
    promotion = request(p, source="staging", version=v3)
    gate = next(g for g in promotion.plan["gates"] if g["gate"] == "data_diff")
    assert gate["passed"] is True and gate["run"] == fixed.pk and gate["baseline_run"] == baseline.pk
    diff = gate["data_diff"]["orders_out"]
    assert diff["schema_changes"] == {"added": [], "removed": [], "retyped": []}
    amount = next(row for row in diff["columns"] if row["column"] == "amount")
    assert amount["passed"] is True and amount["measures"]["sum"]["change_percent"] == 0.0
    assert [c["rule"] for c in amount["checks"]] == ["max_null_share", "max_change.sum"]

    # The request page shows the column table and the chart (inline SVG, no script).
    client = Client()
    client.force_login(p["developer"])
    page = client.get(reverse("web:request-detail", args=[promotion.pk])).content.decode()
    assert 'data-testid="data-diff-orders_out"' in page and "<svg" in page and "bar-ok" in page
    assert "<code>customer_id</code>" in page and "data diff: run #" in page
    assert "<script" not in page.split('data-testid="data-diff-orders_out"')[1].split("</figure>")[0]


@pytest.mark.django_db(transaction=True)
def test_without_profiles_the_data_diff_gate_does_not_pass(promo):
    p = promo
    rule = p["production_rule"]
    rule.require_data_diff = True
    services.rule_save(actor=p["org_admin"], rule=rule)
    deploy_to_staging(p)
    message = _blocked(p, p["version"])
    assert "a run of v1 in staging within 24 h to diff" in message
    run = run_ok(p, "staging")
    for node in run.metrics.values():
        node.pop("columns")
    run.baseline = None
    run.save(update_fields=["metrics", "baseline"])
    assert f"run #{run.pk} has no column profiles" in _blocked(p, p["version"])
