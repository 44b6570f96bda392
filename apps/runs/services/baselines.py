"""Baselines: comparing a run's metrics with the latest successful production run of the same pipeline."""

from django.conf import settings

from apps.environments.models import Kind

from ..models import Run, RunStatus

# --- baselines --------------------------------------------------------------------------------


def compare_with_baseline(run: Run, *, tolerance_percent: float | None = None, require_hash: bool = False) -> dict:
    """Compare a (staging) run's metrics with the latest successful production run of the pipeline."""
    tolerance = settings.BASELINE_ROW_TOLERANCE_PERCENT if tolerance_percent is None else tolerance_percent
    baseline = (
        Run.objects.filter(
            pipeline=run.pipeline,
            environment__organization_id=run.environment.organization_id,
            environment__kind=Kind.PRODUCTION,
            status=RunStatus.SUCCEEDED,
        )
        .exclude(pk=run.pk)
        .order_by("-finished_at")
        .first()
    )
    if baseline is None:
        return {"baseline_run": None, "passed": None, "reason": "No successful production run to compare with."}
    destinations = {}
    passed = True
    for node_id, metrics in run.metrics.items():
        base = baseline.metrics.get(node_id)
        if base is None:
            destinations[node_id] = {"passed": False, "reason": "not in the baseline run"}
            passed = False
            continue
        base_rows, rows = base.get("row_count"), (metrics or {}).get("row_count")
        if not isinstance(base_rows, int) or not isinstance(rows, int):
            destinations[node_id] = {"passed": False, "reason": "row counts missing from the metrics"}
            passed = False
            continue
        delta = rows - base_rows
        within = abs(delta) <= (tolerance / 100) * max(base_rows, 1)
        keys_ok = metrics.get("keys_unique") is not False
        hash_equal = metrics.get("hash_total") is not None and metrics.get("hash_total") == base.get("hash_total")
        ok = within and keys_ok and (hash_equal or not require_hash)
        passed = passed and ok
        destinations[node_id] = {
            "row_count": rows,
            "baseline_row_count": base_rows,
            "row_delta": delta,
            "row_delta_percent": round(100 * delta / base_rows, 3) if base_rows else None,
            "within_tolerance": within,
            "keys_unique": metrics.get("keys_unique"),
            "hash_equal": hash_equal,
            "passed": ok,
        }
    return {
        "baseline_run": baseline.pk,
        "baseline_environment": baseline.environment.slug,
        "tolerance_percent": tolerance,
        "require_hash": require_hash,
        "destinations": destinations,
        "passed": passed,
    }
