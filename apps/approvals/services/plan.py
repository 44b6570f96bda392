"""The frozen plan of a promotion (graph diff, configuration before/after, readiness, hash), its
gates (ticket, validation run, Git), and re-freezing it when the version or the target changed."""

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from apps.core import patterns
from apps.core.models import FrozenDocument
from apps.core.services import audited_save
from apps.core.types import User
from apps.environments.models import Environment
from apps.notifications.models import Event
from apps.pipelines import graph as graphs
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.repositories import gates as git_gates
from apps.resolution import engine
from apps.resolution.answer import Answer
from apps.runs import services as run_services
from apps.runs.models import Run, RunStatus
from apps.tenancy import revisions

from .. import gates_data
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
    left: dict[str, object] = {}
    right: dict[str, object] = {}
    for part in ("variables", "connections", "policy"):
        _flatten(part, (before or {}).get(part) or {}, left)
        _flatten(part, after.get(part) or {}, right)
    return [
        {"path": path, "before": left.get(path), "after": right.get(path)}
        for path in sorted(left.keys() | right.keys())
        if left.get(path) != right.get(path)
    ]


def plan_hash_of(version: PipelineVersion, after: dict) -> str:
    """Covers the version's content and the target's resolved configuration (secrets as references)."""
    canonical = json.dumps({"version": version.content_hash, "config": after}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


GIT_HASHED = ("commit", "branches", "tags", "merged", "detail")


def _with_git(plan_hash: str, found: dict) -> str:
    """The plan hash with what the repository says about a Git-sourced version's commit folded in,
    so a force-push that drops the commit (or a tag that goes) makes the plan stale. It is folded in
    outside the revision-keyed cache of `_current`: a force-push changes no configuration revision.
    `found`: `repositories.gates.evidence` (or the plan's view of it); hand-made versions add nothing."""
    if not found.get("from_git"):
        return plan_hash
    covered = {"plan": plan_hash, "git": {key: found.get(key) for key in GIT_HASHED}}
    canonical = json.dumps(covered, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def _readiness(answer: Answer) -> dict:
    errors = answer["errors"]
    return {
        "ready": not errors,
        "problems": [{"code": e["code"], "path": e["path"], "message": e["message"]} for e in errors],
    }


def _after(
    pipeline: Pipeline, version: PipelineVersion, target: Environment, revision: int | None = None
) -> tuple[Answer, dict, str]:
    """The target's resolution with `version`, its configuration view, and the plan hash they give:
    all a re-check needs to tell whether a frozen plan still holds. `revision`: the organization's
    configuration revision, when the caller read it (with the locked request)."""
    answer = engine.resolve(pipeline, target, version=version, revision=revision)
    after = engine.config_view(answer)
    plan_hash = plan_hash_of(version, after)
    key = _current_key(pipeline, version, target, answer["config_revision"])
    cache.set(key, (plan_hash, _readiness(answer)), engine.CACHE_SECONDS)
    return answer, after, plan_hash


def _current_key(pipeline: Pipeline, version: PipelineVersion, target: Environment, revision) -> str:
    return f"plan-current:v1:{pipeline.project_id}:{pipeline.pk}:{target.pk}:{version.pk}:{revision}"


def _current(
    pipeline: Pipeline, version: PipelineVersion, target: Environment, revision: int | None = None
) -> tuple[str, dict]:
    """(hash, readiness) of a plan frozen now. Kept in the cache under the configuration revision
    (which every configuration write bumps; a version's content never changes), so re-checking a
    plan that still holds neither resolves nor hashes the target's configuration again. The
    repository's word on a Git-sourced version is read each time (`_with_git`)."""
    if revision is None:
        revision = revisions.current(target.organization_id)
    hit = cache.get(_current_key(pipeline, version, target, revision))
    if hit is None:
        answer, _view, plan_hash = _after(pipeline, version, target, revision)
        hit = (plan_hash, _readiness(answer))
    plan_hash, readiness = hit
    return _with_git(plan_hash, git_gates.evidence(version)), readiness


def current_plan_hash(pipeline: Pipeline, version: PipelineVersion, target: Environment) -> str:
    """The hash a plan frozen now would have (nothing read for "before", no diff built)."""
    return _current(pipeline, version, target)[0]


def build_plan(
    pipeline: Pipeline,
    version: PipelineVersion,
    target: Environment,
    *,
    deployed=_UNREAD,
    after: tuple[Answer, dict, str] | None = None,
) -> tuple[dict, str]:
    """Freeze what deploying `version` into `target` changes: graph diff against the deployed version,
    the target's resolved configuration before/after (secrets redacted), readiness; and the hash.
    `deployed`: the target's active deployment when the caller has read it already; `after`: what
    `_after` answered, when the caller has it."""
    if deployed is _UNREAD:
        deployed = run_services.active_deployment(pipeline, target)
    before_version = deployed.version if deployed else None
    after_answer, config_after, plan_hash = after or _after(pipeline, version, target)
    # "Before" is the target as it was when the running version was deployed (stored on the
    # deployment, read, not rebuilt), so approvers see configuration changes made since then as well
    # as the version's own.
    before = run_services.deployed_configuration(deployed) if deployed is not None else None
    plan: dict[str, Any] = {
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
        "config_after": config_after,
        "config_diff": config_diff(before, config_after),
        "readiness": _readiness(after_answer),
        "config_revision": after_answer.get("config_revision"),
    }
    return plan, _with_git(plan_hash, plan["version"]["git"])


def _facts_key(digest: str) -> str:
    return f"plan-facts:v1:{digest}"


def _remember_facts(request: PromotionRequest) -> dict:
    """Keep what re-checks and deploys ask of the stored plan (its readiness, the digest of its
    configuration after) in the cache under the plan's digest: a stored plan never changes."""
    plan = request.plan
    facts = {"readiness": plan.get("readiness"), "config_after_document": plan.get("config_after_document")}
    if request.plan_document_id:
        cache.set(_facts_key(request.plan_document_id), facts, engine.CACHE_SECONDS)
    return facts


def _plan_facts(request: PromotionRequest) -> dict:
    """The stored plan's readiness and configuration-after digest, without decoding a large plan
    when they are known (see _remember_facts)."""
    facts = cache.get(_facts_key(request.plan_document_id)) if request.plan_document_id else None
    return facts if facts is not None else _remember_facts(request)


def _freeze(request: PromotionRequest, plan: dict, plan_hash: str, now=None) -> None:
    """Make `plan` the request's frozen plan. Its configuration after is stored as a document of its
    own as well, the one the deployment will keep (so deploying stores, hashes and compresses nothing)."""
    plan["config_after_document"] = FrozenDocument.store(plan["config_after"])
    request.plan, request.plan_hash, request.plan_frozen_at = plan, plan_hash, now or timezone.now()


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
                    "finished_at": run.finished_at.isoformat() if run and run.finished_at else None,
                    "detail": (
                        f"run #{run.pk} passed in {request_like.source.slug}"
                        if run
                        else f"no passing run of v{version.number} in {request_like.source.slug} "
                        f"within {rule.validation_max_age_hours} h"
                    ),
                }
            )
        if rule.require_data_diff:
            gates.append(gates_data.data_diff_gate(request_like, rule, at))
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


UNCHANGED, READINESS, CHANGED = "unchanged", "readiness", "changed"


def _refresh(request: PromotionRequest, *, actor: User | None = None, deployed=_UNREAD) -> str:
    """refresh_plan, saying what it wrote: nothing, the readiness only, or a re-frozen plan."""
    # The revision came with the locked row (_locked_queryset; none yet reads as 0, as revisions.current).
    revision = (request.config_revision or 0) if hasattr(request, "config_revision") else None
    plan_hash, readiness = _current(request.pipeline, request.version, request.target, revision)
    if plan_hash == request.plan_hash:
        # Readiness is not in the hash (a secret newly allowed in the target changes no reference):
        # keep it current, or a fixed target would fail the deploying step's readiness check forever.
        if readiness == _plan_facts(request)["readiness"]:
            return UNCHANGED
        request.plan = {**request.plan, "readiness": readiness}
        audited_save(request, actor=actor, reason="readiness re-checked", clean=False)
        _remember_facts(request)
        return READINESS
    after = _after(request.pipeline, request.version, request.target, revision)
    plan, plan_hash = build_plan(request.pipeline, request.version, request.target, deployed=deployed, after=after)
    rules = rules_for(request.pipeline, request.target, sources=False)
    plan["gates"] = evaluate_gates(request, rules, at=request.created_at)
    previous = request.plan_hash
    _freeze(request, plan, plan_hash)
    if request.state == S.APPROVED:
        transition(request, "reopen")
    audited_save(request, actor=actor, reason="plan changed: earlier approvals no longer count", clean=False)
    _remember_facts(request)
    approvers = [d.approver for d in request.decisions.all() if d.plan_hash == previous] or _approvers_to_notify(
        request, rules
    )
    _emit(request, Event.APPROVAL_REMINDER, users=approvers, reason="plan_changed")
    return CHANGED


def refresh_plan(request: PromotionRequest, *, actor=None, deployed=_UNREAD) -> bool:
    """Re-freeze the plan if the version's content or the target's configuration changed (caller
    holds the row lock). Earlier approvals stop counting; an approved request goes back to pending
    and those who approved are asked to look again. Returns True when the plan changed. Only then is
    the rest of the plan (the deployed configuration, the diffs) built."""
    return _refresh(request, actor=actor, deployed=deployed) == CHANGED
