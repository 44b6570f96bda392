"""The frozen plan of a promotion (graph diff, configuration before/after, readiness, hash), its
gates (ticket, validation run, Git), and re-freezing it when the version or the target changed."""

import hashlib
import json
from datetime import timedelta

from django.utils import timezone

from apps.core import patterns
from apps.core.services import audited_save
from apps.environments.models import Environment
from apps.notifications.models import Event
from apps.pipelines import graph as graphs
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.repositories import gates as git_gates
from apps.resolution import engine
from apps.runs import services as run_services
from apps.runs.models import Run, RunStatus

from ..models import ApprovalRule, PromotionRequest
from .actions import _approvers_to_notify
from .base import _UNREAD, S, _emit, transition
from .rules import rules_for

# --- the plan ------------------------------------------------------------------------------------------


def _flatten(prefix: str, value, out: dict) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    else:
        out[prefix] = value


def config_diff(before: dict | None, after: dict) -> list[dict]:
    """Leaf-by-leaf differences between two configuration views (variables, connections, policy)."""
    left, right = {}, {}
    for part in ("variables", "connections", "policy"):
        _flatten(part, (before or {}).get(part) or {}, left)
        _flatten(part, after.get(part) or {}, right)
    return [
        {"path": path, "before": left.get(path), "after": right.get(path)}
        for path in sorted(left.keys() | right.keys())
        if left.get(path) != right.get(path)
    ]


def plan_hash_of(version: PipelineVersion, after: dict, *, git: dict | None = None) -> str:
    """Covers the version's content, the target's resolved configuration (secrets as references) and
    what the repository says about the commit (a force-push that drops it makes the plan stale)."""
    covered = {"version": version.content_hash, "config": after}
    if git and git.get("from_git"):
        covered["git"] = git
    canonical = json.dumps(covered, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _readiness(answer: dict) -> dict:
    errors = answer["errors"]
    return {
        "ready": not errors,
        "problems": [{"code": e["code"], "path": e["path"], "message": e["message"]} for e in errors],
    }


def build_plan(
    pipeline: Pipeline, version: PipelineVersion, target: Environment, *, deployed=_UNREAD
) -> tuple[dict, str]:
    """Freeze what deploying `version` into `target` changes: graph diff against the deployed version,
    the target's resolved configuration before/after (secrets redacted), readiness; and the hash.
    `deployed`: the target's active deployment when the caller has read it already."""
    if deployed is _UNREAD:
        deployed = run_services.active_deployment(pipeline, target)
    before_version = deployed.version if deployed else None
    after_answer = engine.resolve(pipeline, target, version=version)
    after = engine.config_view(after_answer)
    # "Before" is the target as it was when the running version was deployed (stored on the deployment;
    # rebuilt from history only for deployments made before it was stored), so approvers see
    # configuration changes made since then as well as the version's own.
    before = None
    if deployed is not None:
        before = (
            deployed.resolved
            if deployed.resolved_document_id
            else engine.config_view(engine.resolve(pipeline, target, version=before_version, as_of=deployed.created_at))
        )
    plan = {
        "version": {
            "number": version.number,
            "content_hash": version.content_hash,
            "message": version.message,
            "git_commit": version.git_commit,
            "git_branch": version.git_branch,
            "git_tag": version.git_tag,
            "compare_url": version.compare_url,
            "git": git_gates.plan_view(version, before_version),
        },
        "target": target.slug,
        "target_deployed_version": before_version.number if before_version else None,
        "graph_diff": graphs.diff(before_version.graph if before_version else None, version.graph),
        "config_before": before,
        "config_after": after,
        "config_diff": config_diff(before, after),
        "readiness": _readiness(after_answer),
        "config_revision": after_answer.get("config_revision"),
    }
    return plan, plan_hash_of(version, after, git=plan["version"]["git"])


# --- gates ------------------------------------------------------------------------------------------------


def _latest_validation(request_like, rule: ApprovalRule, since) -> Run | None:
    """A succeeded run of the version in the source environment whose baseline comparison (if any)
    did not fail, finished after `since`."""
    candidates = Run.objects.filter(
        version=request_like.version,
        environment=request_like.source,
        status=RunStatus.SUCCEEDED,
        finished_at__gte=since,
    ).order_by("-finished_at")
    for run in candidates[:20]:
        if not run.baseline or run.baseline.get("passed") is not False:
            return run
    return None


def evaluate_gates(request_like, rules: list[ApprovalRule], *, at=None) -> list[dict]:
    """Each rule's gates for a request (or an unsaved one): validation, git, refs, ticket."""
    at = at or timezone.now()
    version = request_like.version
    gates = []
    found = None  # the repository's evidence, read once when a rule asks for it
    for rule in rules:
        if rule.require_validation:
            since = at - timedelta(hours=rule.validation_max_age_hours)
            run = _latest_validation(request_like, rule, since)
            gates.append(
                {
                    "gate": "validation",
                    "rule": rule.name,
                    "passed": run is not None,
                    "run": run.pk if run else None,
                    "finished_at": run.finished_at.isoformat() if run else None,
                    "detail": (
                        f"run #{run.pk} passed in {request_like.source.slug}"
                        if run
                        else f"no passing run of v{version.number} in {request_like.source.slug} "
                        f"within {rule.validation_max_age_hours} h"
                    ),
                }
            )
        if rule.require_git or rule.allowed_refs:
            found = found or git_gates.evidence(version)
            gates.extend(git_gates.git_gates(found, rule))
        if rule.require_ticket:
            ok = patterns.fullmatch(rule.require_ticket, request_like.ticket or "")
            gates.append(
                {
                    "gate": "ticket",
                    "rule": rule.name,
                    "passed": ok,
                    "detail": f"ticket '{request_like.ticket}'" if ok else f"a ticket matching {rule.require_ticket}",
                }
            )
    return gates


def refresh_plan(request: PromotionRequest, *, actor=None, deployed=_UNREAD) -> bool:
    """Re-freeze the plan if the version's content or the target's configuration changed (caller
    holds the row lock). Earlier approvals stop counting; an approved request goes back to pending
    and those who approved are asked to look again. Returns True when the plan changed."""
    plan, plan_hash = build_plan(request.pipeline, request.version, request.target, deployed=deployed)
    if plan_hash == request.plan_hash:
        # Readiness is not in the hash (a secret newly allowed in the target changes no reference):
        # keep it current, or a fixed target would fail the deploying step's readiness check forever.
        if plan["readiness"] != request.plan.get("readiness"):
            request.plan = {**request.plan, "readiness": plan["readiness"]}
            audited_save(request, actor=actor, reason="readiness re-checked", clean=False)
        return False
    rules = rules_for(request.pipeline, request.target)
    plan["gates"] = evaluate_gates(request, rules, at=request.created_at)
    previous = request.plan_hash
    request.plan, request.plan_hash, request.plan_frozen_at = plan, plan_hash, timezone.now()
    if request.state == S.APPROVED:
        transition(request, "reopen")
    audited_save(request, actor=actor, reason="plan changed: earlier approvals no longer count", clean=False)
    approvers = [
        d.approver for d in request.decisions.select_related("approver") if d.plan_hash == previous
    ] or _approvers_to_notify(request, rules)
    _emit(request, Event.APPROVAL_REMINDER, users=approvers, reason="plan_changed")
    return True
