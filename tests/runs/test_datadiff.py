"""The data diff of a destination: schema changes first, expectation checks with the reason, and
relative changes against the baseline (pure functions of metrics)."""

from apps.runs import datadiff


def _column(**overrides):
    base = {
        "type": "integer",
        "count": 100,
        "null_count": 0,
        "null_share": 0.0,
        "distinct": 100,
        "min": 1,
        "max": 100,
        "sum": 5050,
        "mean": "50.5",
        "hash": "0" * 16,
    }
    return {**base, **overrides}


def _metrics(**columns):
    return {"row_count": 100, "columns": columns}


def test_schema_changes_come_first_and_removed_or_retyped_columns_fail():
    baseline = _metrics(id=_column(), amount=_column(type="number"), gone=_column())
    run = _metrics(id=_column(), amount=_column(type="text"), extra=_column())
    diff = datadiff.destination_diff(run, baseline, {}, {})
    assert [(r["column"], r["status"]) for r in diff["columns"]] == [
        ("gone", "removed"),
        ("amount", "retyped"),
        ("extra", "added"),
        ("id", "same"),
    ]
    assert diff["schema_changes"] == {
        "added": ["extra"],
        "removed": ["gone"],
        "retyped": [{"column": "amount", "from": "number", "to": "text"}],
    }
    assert diff["passed"] is False
    why = {r["column"]: (r["passed"], r["why"]) for r in diff["columns"]}
    assert why == {
        "gone": (False, "column removed"),
        "amount": (False, "retyped number → text"),
        "extra": (True, "added"),
        "id": (True, "ok"),
    }
    assert datadiff.failures({"out": diff}) == ["out.gone: column removed", "out.amount: retyped number → text"]


def test_expectations_are_checked_with_the_reason():
    run = _metrics(
        id=_column(duplicate_values=2),
        amount=_column(type="number", null_count=30, null_share=0.3, min="-1.5", max="99"),
        status=_column(type="text", unexpected_count=3, unexpected_sample=["lost"]),
        note=_column(type="text"),
    )
    rules = {
        "id": {"unique": True, "not_null": True},
        "amount": {"not_null": True, "max_null_share": 0.1, "range": {"min": 0, "max": 100}},
        "status": {"accepted_values": ["open"]},
        "note": {"unique": True},
        "missing": {"not_null": True},
    }
    diff = datadiff.destination_diff(run, None, rules, {})
    checks = {r["column"]: {c["rule"]: (c["passed"], c["why"]) for c in r["checks"]} for r in diff["columns"]}
    assert checks["id"] == {"not_null": (True, "no NULLs"), "unique": (False, "2 values stored twice or more")}
    assert checks["amount"] == {
        "not_null": (False, "30 NULLs"),
        "range": (False, "min -1.5 below 0"),
        "max_null_share": (False, "null share 0.3 > 0.1"),
    }
    assert checks["status"] == {"accepted_values": (False, "3 values not accepted ('lost')")}
    assert checks["note"] == {"unique": (False, "not measured: no duplicate_values in the metrics")}
    assert checks["missing"] == {"column": (False, "column missing from the run")}


def test_policy_expectations_apply_to_the_columns_a_destination_has_and_the_node_overrides_them():
    run = _metrics(amount=_column(type="number", null_count=20, null_share=0.2))
    policy = {"amount": {"max_null_share": 0.1}, "email": {"not_null": True}}
    assert datadiff.destination_diff(run, None, {}, policy)["passed"] is False
    assert [r["column"] for r in datadiff.destination_diff(run, None, {}, policy)["columns"]] == ["amount"]
    assert datadiff.destination_diff(run, None, {"amount": {"max_null_share": 0.25}}, policy)["passed"] is True


def test_max_change_against_the_baseline():
    baseline = _metrics(amount=_column(type="number", sum="1000", mean="10", distinct=100, count=100))
    run = _metrics(amount=_column(type="number", sum="1200", mean="10.1", distinct=99, count=100))
    rules = {"amount": {"max_change": {"sum": 10, "mean": 5, "distinct": 5, "count": 0}}}
    row = datadiff.destination_diff(run, baseline, rules, {})["columns"][0]
    assert {c["rule"]: c["passed"] for c in row["checks"]} == {
        "max_change.sum": False,
        "max_change.mean": True,
        "max_change.distinct": True,
        "max_change.count": True,
    }
    assert row["why"] == "sum changed +20.00% (> 10%)"
    assert row["measures"]["sum"] == {"baseline": "1000", "value": "1200", "change_percent": 20.0}
    from_zero = datadiff.destination_diff(
        _metrics(amount=_column(sum=5)), _metrics(amount=_column(sum=0)), {"amount": {"max_change": {"sum": 1}}}, {}
    )
    assert from_zero["columns"][0]["why"] == "sum was 0, now 5"
    assert from_zero["columns"][0]["measures"]["sum"]["change_percent"] is None  # JSON has no infinity
    no_baseline = datadiff.destination_diff(run, None, rules, {})
    assert no_baseline["passed"] is True and no_baseline["columns"][0]["status"] == "same"
