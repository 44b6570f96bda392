"""The data diff as the request page shows it: per destination, schema changes first, a row per
column (baseline → this run, change, pass/fail, why) and a bar chart of each column's largest
relative change, drawn as inline SVG geometry (no script, no inline style: the CSP allows neither).
Only arranges apps.runs.datadiff's answer."""

CHART_MEASURES = ("count", "distinct", "sum", "mean", "null_share")
TABLE_MEASURES = ("count", "null_share", "distinct", "sum", "mean", "min", "max")
BAR_WIDTH = 220  # px for a change of CHART_CAP percent or more
CHART_CAP = 100.0
ROW_HEIGHT = 22
LABEL_WIDTH = 160


def _largest_change(row: dict) -> tuple[str | None, float | None]:
    best, measure = None, None
    for name in CHART_MEASURES:
        change = (row.get("measures") or {}).get(name, {}).get("change_percent")
        if isinstance(change, int | float) and (best is None or abs(change) > abs(best)):
            best, measure = change, name
    return measure, best


def _percent(change: float | None) -> str:
    if change is None:
        return "—"
    return f"{change:+.2f} %"


def _chart(rows: list[dict]) -> dict:
    bars = []
    for index, row in enumerate(rows):
        measure, change = _largest_change(row)
        size = 0.0 if change is None else min(abs(change), CHART_CAP) / CHART_CAP * BAR_WIDTH
        bars.append(
            {
                "column": row["column"],
                "y": index * ROW_HEIGHT,
                "text_y": index * ROW_HEIGHT + 15,
                "x": LABEL_WIDTH,
                "width": round(max(size, 1.0 if change else 0.0), 1),
                "label_x": LABEL_WIDTH + round(size, 1) + 6,
                "label": f"{_percent(change)} {measure}" if measure else "no baseline",
                "passed": row["passed"],
            }
        )
    return {
        "bars": bars,
        "height": max(len(rows), 1) * ROW_HEIGHT,
        "width": LABEL_WIDTH + BAR_WIDTH + 140,
        "cap": int(CHART_CAP),
    }


def destination_view(node_id: str, diff: dict) -> dict:
    rows = []
    for row in diff.get("columns", []):
        measures = row.get("measures") or {}
        rows.append(
            {
                **row,
                "cells": [
                    {
                        "measure": name,
                        "baseline": measures.get(name, {}).get("baseline"),
                        "value": measures.get(name, {}).get("value"),
                        "change": _percent(measures.get(name, {}).get("change_percent"))
                        if name not in ("min", "max")
                        else "",
                    }
                    for name in TABLE_MEASURES
                ],
                "schema_change": row["status"] in ("added", "removed", "retyped"),
            }
        )
    return {
        "node": node_id,
        "passed": diff.get("passed"),
        "schema_changes": diff.get("schema_changes") or {},
        "has_schema_changes": any((diff.get("schema_changes") or {}).values()),
        "rows": rows,
        "chart": _chart(rows),
        "measures": TABLE_MEASURES,
    }


def data_diff_view(diffs: dict | None) -> list[dict]:
    """One view per destination of `{node_id: destination_diff}` (empty: nothing profiled)."""
    return [destination_view(node_id, diff) for node_id, diff in sorted((diffs or {}).items()) if diff]
