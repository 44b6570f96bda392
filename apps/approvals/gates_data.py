"""The data diff gate: a rule with `require_data_diff` needs the latest succeeded run of the version
in the source environment (within the rule's validation_max_age_hours) to meet its column
expectations, keep every column's type and stay within tolerance of the production baseline (row
count within BASELINE_ROW_TOLERANCE_PERCENT, keys unique, each column's max_change).

The latest run counts, passing or not: a newer run with broken data blocks even when an older one
passed, and re-running on fixed data unblocks. The diff comes from the run's recorded baseline
comparison (apps.runs.services.compare_with_baseline); a run that has none (not a staging or
validation run) is compared now."""

from datetime import timedelta

from apps.runs import datadiff
from apps.runs import services as run_services
from apps.runs.models import Run, RunStatus


def latest_run(request_like, since) -> Run | None:
    return (
        Run.objects.filter(
            version=request_like.version,
            environment=request_like.source,
            status=RunStatus.SUCCEEDED,
            finished_at__gte=since,
        )
        .select_related("environment", "version")
        .order_by("-finished_at", "-pk")
        .first()
    )


def _comparison(run: Run) -> dict:
    recorded = run.baseline or {}
    if "data_diff" in recorded:
        return recorded
    return run_services.compare_with_baseline(run)


def _row_problems(comparison: dict) -> list[str]:
    problems = []
    tolerance = comparison.get("tolerance_percent")
    for node_id, result in (comparison.get("destinations") or {}).items():
        if "reason" in result:
            problems.append(f"{node_id}: {result['reason']}")
            continue
        if result.get("within_tolerance") is False:
            problems.append(
                f"{node_id}: {result.get('row_count')} rows against {result.get('baseline_row_count')} "
                f"({result.get('row_delta_percent')}%, beyond ±{tolerance}%)"
            )
        if result.get("keys_unique") is False:
            problems.append(f"{node_id}: duplicate keys")
    return problems


def data_diff_gate(request_like, rule, at) -> dict:
    since = at - timedelta(hours=rule.validation_max_age_hours)
    run = latest_run(request_like, since)
    gate = {"gate": "data_diff", "rule": rule.name, "run": run.pk if run else None}
    source = request_like.source.slug
    if run is None:
        return {
            **gate,
            "passed": False,
            "detail": f"a run of v{request_like.version.number} in {source} within "
            f"{rule.validation_max_age_hours} h to diff",
            "data_diff": {},
        }
    comparison = _comparison(run)
    diffs = comparison.get("data_diff") or {}
    problems = _row_problems(comparison) + datadiff.failures(diffs)
    if not any(d.get("profiled") for d in diffs.values()):
        problems.append(f"run #{run.pk} has no column profiles")
    baseline = comparison.get("baseline_run")
    against = f"production run #{baseline}" if baseline else "no production baseline (expectations only)"
    if problems:
        detail = f"run #{run.pk} in {source} within its expectations and tolerance; against {against}: " + "; ".join(
            problems
        )
    else:
        detail = f"run #{run.pk} in {source} within its expectations, against {against}"
    return {
        **gate,
        "passed": not problems,
        "baseline_run": baseline,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "detail": detail,
        "data_diff": diffs,
    }
