"""Shape what services and selectors answer into what templates show. No rule is decided here:
who may approve, whether rules and gates are met and whether a plan is stale all come from the
approvals, resolution and runs services; this module only arranges and formats their answers."""

from datetime import datetime

from django.utils.dateparse import parse_datetime

from apps.approvals import services as approvals
from apps.approvals.models import ApprovalDecision, PromotionRequest, PromotionState
from apps.core.models import without_blobs
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.pipelines.selectors import versions_of
from apps.repositories import gates as git_gates
from apps.repositories.selectors import repository_of
from apps.resolution import services as resolution
from apps.runs import datadiff as run_datadiff
from apps.runs.models import Run
from apps.runs.selectors import deployments_for, runs_for
from apps.web.datadiff_view import data_diff_view

SECRET_PREFIX = "secret://"
METRIC_FIELDS = (
    ("row_count", "rows"),
    ("distinct_keys", "distinct keys"),
    ("duplicate_key_count", "duplicate keys"),
    ("hash_total", "hash total"),
)
OPEN_FOR_PLAN = (PromotionState.PENDING, PromotionState.APPROVED)


def is_secret_reference(value) -> bool:
    return isinstance(value, str) and value.startswith(SECRET_PREFIX)


def _when(value) -> datetime | None:
    return parse_datetime(value) if isinstance(value, str) else value


# --- request detail ---------------------------------------------------------------------------------------


def _graph_diff(diff: dict) -> dict:
    changed = [
        {"id": node_id, "fields": [{"name": name, **values} for name, values in fields.items()]}
        for node_id, fields in (diff.get("nodes_changed") or {}).items()
    ]
    return {
        "added": diff.get("nodes_added") or [],
        "removed": diff.get("nodes_removed") or [],
        "changed": changed,
        "edges_added": diff.get("edges_added") or [],
        "edges_removed": diff.get("edges_removed") or [],
        "identical": diff.get("identical", False),
    }


def _config_diff(rows: list[dict]) -> list[dict]:
    """`variables.batch_size.value` → group, name, attribute; secret references marked."""
    shaped = []
    for row in rows:
        group, _, rest = row["path"].partition(".")
        if not rest:  # a whole section that is empty on one side: its entries are listed one by one
            continue
        name, _, attribute = rest.partition(".")
        shaped.append(
            {
                "group": group,
                "name": name,
                "attribute": attribute,
                "before": row["before"],
                "after": row["after"],
                "secret": is_secret_reference(row["before"]) or is_secret_reference(row["after"]),
            }
        )
    return shaped


def _config_view(view: dict | None) -> dict:
    view = view or {}
    return {
        "variables": [{"name": name, **entry} for name, entry in (view.get("variables") or {}).items()],
        "connections": [{"name": name, **entry} for name, entry in (view.get("connections") or {}).items()],
        "policy": sorted((view.get("policy") or {}).items()),
    }


def _baseline_run(comparison: dict, baseline_runs: dict[int, Run]) -> Run | None:
    """The baseline run a stored comparison names, if it was loaded."""
    pk = comparison.get("baseline_run")
    return baseline_runs.get(pk) if pk is not None else None


def _metrics_rows(run: Run, baseline_runs: dict[int, Run]) -> list[dict]:
    """Per destination: the run's metrics beside the production baseline's, with the comparison the
    runs service stored (deltas, tolerance, pass/fail)."""
    comparison = run.baseline or {}
    base_run = _baseline_run(comparison, baseline_runs)
    rows = []
    for node_id, metrics in (run.metrics or {}).items():
        base = (base_run.metrics or {}).get(node_id, {}) if base_run else {}
        verdict = (comparison.get("destinations") or {}).get(node_id, {})
        values = []
        for key, label in METRIC_FIELDS:
            mine, theirs = (metrics or {}).get(key), base.get(key)
            delta = mine - theirs if isinstance(mine, int) and isinstance(theirs, int) else None
            values.append({"label": label, "value": mine, "baseline": theirs, "delta": delta})
        rows.append(
            {
                "node": node_id,
                "metrics": values,
                "keys_unique": (metrics or {}).get("keys_unique"),
                "delta_percent": verdict.get("row_delta_percent"),
                "within_tolerance": verdict.get("within_tolerance"),
                "hash_equal": verdict.get("hash_equal"),
                "passed": verdict.get("passed"),
                "reason": verdict.get("reason", ""),
            }
        )
    return rows


def _runs(promotion: PromotionRequest, gates: list[dict]) -> list[dict]:
    """Attached runs and the validation runs the gates found, each with its baseline comparison."""
    gate_runs = [g["run"] for g in gates if g.get("gate") in ("validation", "data_diff") and g.get("run")]
    gate_diffs = {g["run"]: g.get("data_diff") for g in gates if g.get("gate") == "data_diff" and g.get("run")}
    ids = {r.pk for r in promotion.attached_runs.all()} | set(gate_runs)
    runs = list(Run.objects.filter(pk__in=ids).select_related("environment", "version").order_by("-created_at"))
    baseline_ids = {pk for r in runs if (pk := (r.baseline or {}).get("baseline_run")) is not None}
    baseline_runs = {r.pk: r for r in Run.objects.filter(pk__in=baseline_ids).select_related("environment", "version")}
    shaped = []
    for run in runs:
        comparison = run.baseline or {}
        shaped.append(
            {
                "run": run,
                "attached": run.pk in {r.pk for r in promotion.attached_runs.all()},
                "gate": run.pk in gate_runs,
                "baseline_run": _baseline_run(comparison, baseline_runs),
                "baseline_passed": comparison.get("passed"),
                "baseline_reason": comparison.get("reason", ""),
                "tolerance_percent": comparison.get("tolerance_percent"),
                "destinations": _metrics_rows(run, baseline_runs),
                "data_diff": data_diff_view(comparison.get("data_diff") or gate_diffs.get(run.pk)),
            }
        )
    return shaped


def _timeline(promotion: PromotionRequest) -> list[dict]:
    """The request's history (state changes with who and why) and every decision ever given,
    including those an earlier plan made obsolete."""
    events = []
    for row in promotion.history.select_related("history_user").order_by("history_date", "history_id"):
        events.append(
            {
                "when": row.history_date,
                "who": row.history_user.get_username() if row.history_user else "system",
                "kind": "state",
                "state": row.state,
                "text": row.history_change_reason or {"+": "created", "~": "changed", "-": "deleted"}[row.history_type],
            }
        )
    decision_history = ApprovalDecision.history.filter(request_id=promotion.pk).select_related("history_user")
    for row in decision_history.order_by("history_date", "history_id"):
        events.append(
            {
                "when": row.history_date,
                "who": row.history_user.get_username() if row.history_user else "system",
                "kind": "decision",
                "state": row.decision,
                "text": row.comment,
                "current_plan": row.plan_hash == promotion.plan_hash,
            }
        )
    return sorted(events, key=lambda e: e["when"])


def _gates(gates: list[dict]) -> list[dict]:
    return [{**gate, "finished_at": _when(gate.get("finished_at"))} for gate in gates]


def _rules(statuses: list[dict]) -> list[dict]:
    shaped = []
    for status in statuses:
        noun = "approval" if status["required_approvals"] == 1 else "approvals"
        shaped.append({**status, "summary": f"{status['approvals']} of {status['required_approvals']} {noun}"})
    return shaped


def request_page(user, promotion: PromotionRequest) -> dict:
    """Everything the request detail shows, from the approvals services."""
    rules = approvals.rules_for(promotion.pipeline, promotion.target)
    actions = approvals.promotion_actions(user, promotion, rules)
    gates = approvals.evaluate_gates(promotion, rules, at=promotion.created_at)
    stale = False
    if promotion.state in OPEN_FOR_PLAN:
        stale = (
            approvals.current_plan_hash(promotion.pipeline, promotion.version, promotion.target) != promotion.plan_hash
        )
    plan = promotion.plan or {}
    return {
        "promotion": promotion,
        "version": promotion.version,
        "plan": plan,
        # What the repository vouched for when the plan was frozen (the stale banner says if it moved).
        "git": (plan.get("version") or {}).get("git") or git_gates.evidence(promotion.version),
        "graph_diff": _graph_diff(plan.get("graph_diff") or {}),
        "config_diff": _config_diff(plan.get("config_diff") or []),
        "config_after": _config_view(plan.get("config_after")),
        "readiness": plan.get("readiness") or {"ready": True, "problems": []},
        "stale": stale,
        "rules": _rules(approvals.rule_status(promotion, rules)),
        "no_rules": not rules,
        "gates": _gates(gates),
        # The buttons are promotion_actions' answers; the decision card shows while the state machine
        # still allows a decision.
        "decidable": bool({"approve", "reject"} & promotion.available_transitions()),
        "blockers": actions["approve"].reasons,
        "may_approve": actions["approve"].allowed,
        "may_reject": actions["reject"].allowed,
        "may_cancel": actions["cancel"].allowed,
        "runs": _runs(promotion, gates),
        "timeline": _timeline(promotion),
    }


# --- environment matrix -------------------------------------------------------------------------------------


def matrix_page(user, project, *, page: int = 1) -> dict:
    """Variables × environments (one page of rows) and connection roles × environments, from
    resolution.matrix."""
    answer = resolution.matrix(user, project, page=page)
    variables = [
        {
            "name": name,
            **row,
            "cells": [{**cell, "secret": is_secret_reference(cell["value"])} for cell in row["cells"]],
            "missing": any(cell["missing_required"] for cell in row["cells"]),
        }
        for name, row in answer["variables"].items()
    ]
    connections = []
    for name, cells in answer["connections"].items():
        shaped = [
            {
                **cell,
                "params": sorted((cell.get("params") or {}).items()),
                "unbound": cell.get("source") in (None, "unbound"),
            }
            for cell in cells
        ]
        distinct = {repr((c["params"], c["credential"])) for c in shaped}
        connections.append(
            {
                "name": name,
                "kind": next((c["kind"] for c in cells if c.get("kind")), ""),
                "cells": shaped,
                "differs": len(distinct) > 1,
            }
        )
    return {
        "environments": answer["environments"],
        "variables": variables,
        "page": answer["page"],
        "connections": connections,
    }


# --- pipeline page ------------------------------------------------------------------------------------------

RECENT_RUNS = 20


def pipeline_page(user, pipeline) -> dict:
    """Deployed version per environment, recent runs with metrics, versions and promotions."""
    from apps.approvals.selectors import promotions_for

    organization_environments = Environment.objects.in_organization(pipeline.project.organization_id)
    environments = list(organization_environments.restrict(user).order_by("position", "name"))
    deployed = {
        d.environment_id: d
        for d in deployments_for(user).filter(pipeline=pipeline, is_active=True).select_related("version__author")
    }
    stages = [{"environment": e, "deployment": deployed.get(e.pk)} for e in environments]
    # The page shows each run's metrics and baseline verdict, never its resolved configuration or log.
    recent = without_blobs(runs_for(user).filter(pipeline=pipeline), keep=("metrics", "baseline"))
    runs = list(recent.order_by("-created_at", "-id")[:RECENT_RUNS])
    requestable = organization_environments.restrict(user, perms.REQUEST_PROMOTION).exists()
    return {
        "pipeline": pipeline,
        "stages": stages,
        "runs": [
            {
                "run": run,
                "destinations": [
                    {"node": node_id, **{key: (m or {}).get(key) for key, _label in METRIC_FIELDS}}
                    for node_id, m in (run.metrics or {}).items()
                ],
                "baseline_passed": (run.baseline or {}).get("passed"),
            }
            for run in runs
        ],
        "versions": list(versions_of(pipeline)[:10]),
        "repository": repository_of(pipeline),
        "promotions": list(without_blobs(promotions_for(user).filter(pipeline=pipeline))[:10]),
        "may_request": requestable,
    }


# --- delivery insights -----------------------------------------------------------------------------------------

CHART_WIDTH, CHART_HEIGHT, CHART_GAP = 240, 48, 2


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def insights(pairs) -> list[dict]:
    """Group the delivery insights by pipeline, each environment with its figures and the geometry
    of a small bar chart (deployments per week, failed ones in red) drawn as inline SVG."""
    grouped: dict[int, dict] = {}
    for pair in pairs:
        weeks = pair.weekly
        tallest = max([w["deployments"] for w in weeks] + [1])
        width = (CHART_WIDTH - CHART_GAP * (len(weeks) - 1)) / max(len(weeks), 1)
        bars = []
        for index, week in enumerate(weeks):
            x = round(index * (width + CHART_GAP), 1)
            height = round(CHART_HEIGHT * week["deployments"] / tallest, 1)
            failed = round(CHART_HEIGHT * week["failures"] / tallest, 1)
            bars.append(
                {
                    "x": x,
                    "width": round(width, 1),
                    "y": round(CHART_HEIGHT - height, 1),
                    "height": height,
                    "failed_y": round(CHART_HEIGHT - failed, 1),
                    "failed": failed,
                    "label": f"week of {week['week']:%d %b}: {week['deployments']} deployed, {week['failures']} failed",
                }
            )
        rate = pair.change_failure_rate
        grouped.setdefault(pair.pipeline_id, {"id": pair.pipeline_id, "name": pair.pipeline, "environments": []})[
            "environments"
        ].append(
            {
                "name": pair.environment,
                "deployments": pair.deployments,
                "per_week": pair.deployments_per_week,
                "lead_time": _duration(pair.lead_time_seconds),
                "failure_rate": "—" if rate is None else f"{rate:.0%}",
                "restore": _duration(pair.time_to_restore_seconds),
                "bars": bars,
                "chart": {"width": CHART_WIDTH, "height": CHART_HEIGHT},
            }
        )
    return list(grouped.values())


# --- run page -------------------------------------------------------------------------------------------------

TRIGGER_TEXT = {
    "manual": "started by hand",
    "api": "started through the API",
    "schedule": "started by a schedule",
    "validation": "a validation run",
    "trigger": "started by a trigger",
    "webhook": "started by a webhook trigger",
}


def run_started_by(run: Run) -> str:
    """Who and what started a run: the trigger and the person (or the schedule's owner, or the API
    key's owner) it acted for."""
    who = run.requested_by.get_username() if run.requested_by else "nobody (the requester was removed)"
    if run.trigger == "trigger" and run.upstream_id:
        return f"{TRIGGER_TEXT['trigger']} on success of run {run.upstream_id}, acting for {who}"
    if run.trigger in ("schedule", "trigger", "webhook"):
        return f"{TRIGGER_TEXT[run.trigger]}, acting for {who}"
    return f"{TRIGGER_TEXT.get(run.trigger, run.trigger)} by {who}"


def _run_configuration(resolved: dict) -> dict:
    """The configuration the run resolved (secrets as references), each value with its provenance."""
    variables = [
        {
            "name": name,
            "type": entry.get("type"),
            "value": entry.get("secret") or entry.get("value"),
            "secret": bool(entry.get("secret")),
            "source": entry.get("source"),
            "scope": entry.get("scope"),
        }
        for name, entry in sorted((resolved.get("variables") or {}).items())
    ]
    connections = [
        {
            "name": name,
            "kind": entry.get("kind"),
            "source": entry.get("source"),
            "scope": entry.get("role_scope"),
            "params": sorted((entry.get("params") or {}).items()),
            "credential": entry.get("credential"),
        }
        for name, entry in sorted((resolved.get("connections") or {}).items())
    ]
    policy = resolved.get("policy") or {}
    return {"variables": variables, "connections": connections, "policy": sorted(policy.items())}


def run_page(user, run: Run) -> dict:
    """The run page: status, who started it, parameters, metrics against the baseline, the log at the
    environment's log level, the resolved configuration and the run_actions answers for the buttons."""
    from apps.runs import services as run_services
    from apps.runs.models import TERMINAL

    comparison = run.baseline or {}
    baseline_runs = {}
    if comparison.get("baseline_run"):
        baseline_runs = {
            r.pk: r for r in Run.objects.filter(pk=comparison["baseline_run"]).select_related("environment", "version")
        }
    actions = run_services.run_actions(user, run)
    policy = (run.resolved or {}).get("policy") or {}
    return {
        "run": run,
        "finished": run.status in TERMINAL,
        "started_by": run_started_by(run),
        "parameters": sorted((run.parameters or {}).items()),
        "destinations": _metrics_rows(run, baseline_runs),
        "baseline": comparison,
        "baseline_run": _baseline_run(comparison, baseline_runs),
        # Column profiles: against the baseline when compared, else against the expectations alone.
        "data_diff": data_diff_view(comparison.get("data_diff") or run_datadiff.run_data_diff(run, None)),
        "log_level": policy.get("log_level") or "INFO",
        "log_lines": (run.log_excerpt or "").splitlines(),
        "configuration": _run_configuration(run.resolved or {}),
        "actions": actions,
    }


# --- pipeline page: schedules and preview ------------------------------------------------------------------------


def fire_times(ticks) -> list[dict]:
    """Fire times as the people in the schedule's time zone read them (never converted to the server's)."""
    return [{"iso": t.isoformat(), "text": f"{t:%a %Y-%m-%d %H:%M} {t.tzname()}"} for t in ticks]


def schedules(user, pipeline) -> list[dict]:
    """The pipeline's schedules the user may see, each with its next fire times (in its time zone) and
    whether the user may edit it (the runs service's rule)."""
    from apps.core.errors import DomainError
    from apps.runs import services as run_services
    from apps.runs.cron import next_fire_times
    from apps.runs.selectors import schedules_for

    shaped = []
    for schedule in schedules_for(user).filter(pipeline=pipeline).order_by("environment__position", "id"):
        try:
            run_services.require_schedule_edit(user, schedule.environment)
            refusal = ""
        except DomainError as exc:
            refusal = exc.message
        try:
            upcoming = fire_times(next_fire_times(schedule.cron, schedule.timezone))
        except DomainError:
            upcoming = []
        shaped.append({"schedule": schedule, "next": upcoming, "may_edit": not refusal, "refusal": refusal})
    return shaped


def triggers(user, pipeline) -> list[dict]:
    """The pipeline's triggers the user may see, per environment (in promotion order), each with
    whether the user may edit it (the runs service's rule, as for schedules)."""
    from apps.core.errors import DomainError
    from apps.runs import services as run_services
    from apps.runs.selectors import triggers_for

    shaped, answers = [], {}
    rows = triggers_for(user).filter(pipeline=pipeline).order_by("environment__position", "environment_id", "id")
    for trigger in rows:
        if trigger.environment_id not in answers:
            try:
                run_services.require_schedule_edit(user, trigger.environment)
                answers[trigger.environment_id] = ""
            except DomainError as exc:
                answers[trigger.environment_id] = exc.message
        refusal = answers[trigger.environment_id]
        shaped.append(
            {
                "trigger": trigger,
                "hook_url": run_services.trigger_hook_url(trigger),
                "may_edit": not refusal,
                "refusal": refusal,
            }
        )
    return shaped


def preview_environments(user, pipeline):
    """The stages where the user may preview data (the runs service's preview_answer)."""
    from apps.runs import services as run_services

    candidates = Environment.objects.in_organization(pipeline.project.organization_id).restrict(user, perms.RUN)
    allowed = [e.pk for e in candidates if run_services.preview_answer(user, e).allowed]
    return Environment.objects.filter(pk__in=allowed).order_by("position", "name")


def personal_rows(user, variables) -> list[dict]:
    """The user's own personal values for these variables (a secret as its reference), one query."""
    from apps.variables.selectors import personal_overrides_of

    rows = personal_overrides_of(user).filter(variable__in=[v.pk for v in variables])
    return [
        {
            "row": row,
            "value": row.secret.display_reference if row.secret else row.value,
            "secret": row.secret is not None,
        }
        for row in rows.order_by("variable__name", "environment__position")
    ]


def source_nodes(pipeline) -> list[str]:
    """The source node ids of the pipeline's latest version (what a preview can read)."""
    version = pipeline.versions.order_by("-number").first()
    graph = version.graph if version is not None else {}
    return [n["id"] for n in (graph or {}).get("nodes", []) if n.get("type") == "source"]
