"""The data diff: a run's column profiles against its expectations and the production baseline's
profiles, column by column — schema changes (removed, retyped, added columns) first, then each
column's measures (baseline → this run, relative change) and the expectation checks (pass/fail, why).

Pure functions of metrics dictionaries (`metrics.<destination>.columns`, as the built-in executor
records them and external executors report them)."""

import math
from typing import Any

from django.core.exceptions import ObjectDoesNotExist

from apps.pipelines import expectations as expectation_rules
from apps.runs.profiles import as_float

MEASURES = ("count", "null_share", "distinct", "sum", "mean", "min", "max")
CHANGE_MEASURES = expectation_rules.CHANGE_MEASURES


def relative_change(baseline, value) -> float | None:
    """Percent change from baseline to value (None when either is not a number, or from 0 to
    something: no finite percentage; JSON has no infinity)."""
    before, after = as_float(baseline), as_float(value)
    if before is None or after is None or not (math.isfinite(before) and math.isfinite(after)):
        return None
    if before == 0:
        return 0.0 if after == 0 else None
    return round(100 * (after - before) / abs(before), 4)


def _within_range(profile: dict, bounds: dict) -> tuple[bool, str]:
    problems = []
    numeric = isinstance(bounds.get("min"), int | float) or isinstance(bounds.get("max"), int | float)
    for end, bad in (("min", lambda v, b: v < b), ("max", lambda v, b: v > b)):
        bound, value = bounds.get(end), profile.get(end)
        if bound is None or value is None:
            continue
        seen = as_float(value) if numeric else str(value)
        if seen is None or bad(seen, bound):
            word = "below" if end == "min" else "above"
            problems.append(f"{end} {value} {word} {bound}")
    return not problems, "; ".join(problems)


def check_column(profile: dict | None, rules: dict, baseline: dict | None) -> list[dict]:
    """One result per rule: {"rule", "passed", "why"}."""
    if profile is None:
        return [{"rule": "column", "passed": False, "why": "column missing from the run"}]
    results = []

    def add(rule: str, passed: bool, why: str) -> None:
        results.append({"rule": rule, "passed": passed, "why": why})

    nulls = profile.get("null_count")
    if rules.get("not_null"):
        add("not_null", nulls == 0, "no NULLs" if nulls == 0 else f"{nulls} NULLs")
    if rules.get("unique"):
        duplicates = profile.get("duplicate_values")
        if duplicates is None:
            add("unique", False, "not measured: no duplicate_values in the metrics")
        else:
            add("unique", duplicates == 0, "unique" if not duplicates else f"{duplicates} values stored twice or more")
    if "accepted_values" in rules:
        unexpected = profile.get("unexpected_count")
        if unexpected is None:
            add("accepted_values", False, "not measured: no unexpected_count in the metrics")
        else:
            sample = ", ".join(repr(v) for v in profile.get("unexpected_sample") or [])
            add(
                "accepted_values",
                unexpected == 0,
                "all values accepted" if not unexpected else f"{unexpected} values not accepted ({sample})",
            )
    if "range" in rules:
        ok, why = _within_range(profile, rules["range"])
        add("range", ok, why or "within range")
    if "max_null_share" in rules:
        share = profile.get("null_share")
        ok = isinstance(share, int | float) and share <= rules["max_null_share"]
        add("max_null_share", ok, f"null share {share} {'≤' if ok else '>'} {rules['max_null_share']}")
    for measure, limit in (rules.get("max_change") or {}).items():
        if baseline is None:
            add(f"max_change.{measure}", True, "no baseline column to compare with")
            continue
        before, after = baseline.get(measure), profile.get(measure)
        change = relative_change(before, after)
        if change is None:
            why = f"{measure} was 0, now {after}" if as_float(before) == 0 else f"{measure} not comparable"
            add(f"max_change.{measure}", False, why)
            continue
        ok = abs(change) <= limit
        add(f"max_change.{measure}", ok, f"{measure} changed {_percent(change)} ({'≤' if ok else '>'} {limit}%)")
    return results


def _percent(change: float) -> str:
    return f"{change:+.2f}%"


def destination_diff(metrics: dict, baseline: dict | None, node_expectations, policy_expectations) -> dict:
    """The data diff of one destination. `baseline`: the production run's metrics of the same node
    (None: no baseline; then only the expectations are checked)."""
    columns = (metrics or {}).get("columns") or {}
    base_columns = ((baseline or {}).get("columns") or {}) if baseline is not None else {}
    compare = baseline is not None and bool(base_columns)
    node_rules = node_expectations if isinstance(node_expectations, dict) else {}
    rules_by_column = expectation_rules.combined(node_rules, policy_expectations)
    names = list(columns) + [n for n in base_columns if n not in columns] if compare else list(columns)
    names += [n for n in node_rules if n not in names]  # a node's expectation on a missing column
    rows = []
    for name in names:
        profile, base = columns.get(name), base_columns.get(name) if compare else None
        if profile is None and base is not None:
            status = "removed"
        elif profile is not None and compare and base is None:
            status = "added"
        elif profile is not None and base is not None and profile.get("type") != base.get("type"):
            status = "retyped"
        else:
            status = "same" if profile is not None else "missing"
        rules = rules_by_column.get(name, {})
        if profile is None and name not in node_rules:
            rules = {}  # a policy's expectations apply to the columns a destination has
        checks = check_column(profile, rules, base) if rules else []
        if status == "removed":
            checks.insert(0, {"rule": "schema", "passed": False, "why": "column removed"})
        elif status == "retyped":
            why = f"retyped {(base or {}).get('type')} → {(profile or {}).get('type')}"
            checks.insert(0, {"rule": "schema", "passed": False, "why": why})
        measures = {}
        for measure in MEASURES:
            value = profile.get(measure) if profile else None
            before = base.get(measure) if base else None
            change = relative_change(before, value) if measure not in ("min", "max") else None
            measures[measure] = {"baseline": before, "value": value, "change_percent": change}
        failed = [c["why"] for c in checks if not c["passed"]]
        rows.append(
            {
                "column": name,
                "status": status,
                "type": profile.get("type") if profile else None,
                "baseline_type": base.get("type") if base else None,
                "measures": measures,
                "checks": checks,
                "passed": not failed,
                "why": "; ".join(failed) if failed else ("added" if status == "added" else "ok"),
            }
        )
    order = {"removed": 0, "retyped": 1, "added": 2}
    rows.sort(key=lambda r: order.get(r["status"], 3))  # stable: schema changes first, then table order
    return {
        "schema_changes": {
            "added": [r["column"] for r in rows if r["status"] == "added"],
            "removed": [r["column"] for r in rows if r["status"] == "removed"],
            "retyped": [
                {"column": r["column"], "from": r["baseline_type"], "to": r["type"]}
                for r in rows
                if r["status"] == "retyped"
            ],
        },
        "columns": rows,
        "profiled": bool(columns),
        "passed": all(r["passed"] for r in rows),
    }


def failures(diff_by_destination: dict) -> list[str]:
    """`<destination>.<column>: why` for every failing column (what a blocked gate names)."""
    out = []
    for node_id, diff in (diff_by_destination or {}).items():
        for row in (diff or {}).get("columns", []):
            if not row.get("passed"):
                out.append(f"{node_id}.{row['column']}: {row['why']}")
    return out


def graph_expectations(graph: dict | None) -> dict[Any, dict]:
    """Destination node id → its expectations, from a pipeline graph."""
    return {
        node.get("id"): node.get("expectations") or {}
        for node in (graph or {}).get("nodes", [])
        if isinstance(node, dict) and node.get("type") == "destination"
    }


def policy_expectations(environment) -> dict:
    try:
        policy = environment.policy
    except ObjectDoesNotExist:
        return {}
    return policy.expectations if isinstance(policy.expectations, dict) else {}


def run_data_diff(run, baseline_run) -> dict[str, dict]:
    """Per destination of `run`, its data diff against `baseline_run` (or None: expectations only).
    Expectations: the run's version's destination nodes, and the run environment's policy."""
    node_rules = graph_expectations(run.version.graph if run.version_id else None)
    policy = policy_expectations(run.environment)
    base_metrics = baseline_run.metrics if baseline_run is not None else {}
    return {
        node_id: destination_diff(
            metrics, base_metrics.get(node_id) if baseline_run is not None else None, node_rules.get(node_id), policy
        )
        for node_id, metrics in (run.metrics or {}).items()
        if isinstance(metrics, dict)
    }


def profile_summary(profile: dict) -> str:
    """One line for a column profile (the run_pipeline summary)."""
    parts = [
        str(profile.get("type")),
        f"nulls {profile.get('null_count')} ({100 * (profile.get('null_share') or 0):.1f}%)",
        f"distinct ~{profile.get('distinct')}",
        f"min {profile.get('min')}",
        f"max {profile.get('max')}",
    ]
    if "sum" in profile:
        parts += [f"sum {profile.get('sum')}", f"mean {profile.get('mean')}"]
    if "min_length" in profile:
        parts.append(f"length {profile.get('min_length')}–{profile.get('max_length')}")
    parts.append(f"hash {profile.get('hash')}")
    return ", ".join(parts)
