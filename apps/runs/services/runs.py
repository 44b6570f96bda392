"""Runs: creating one (the deployed version, destination policy, idempotency), dispatching it to the
worker, its actions (cancel, rerun), and the outbox sweep that re-dispatches or takes back runs."""

import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django_fsm import can_proceed

from apps.core import idempotency
from apps.core.actions import ALLOWED, Answer, refused
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed, field_error
from apps.core.queue import enqueue
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment, Kind
from apps.environments.services import environment_emit
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.resolution import engine

from ..models import TERMINAL, Executor, Run, RunStatus, Trigger
from .deployments import active_deployment, require_own_environment

logger = logging.getLogger("planasonix.runs")


# --- creating runs ----------------------------------------------------------------------------


def _default_version(pipeline, environment) -> PipelineVersion:
    deployment = active_deployment(pipeline, environment)
    if deployment is not None:
        return deployment.version
    version = pipeline.versions.order_by("-number").first()
    if version is None:
        raise field_error("version", f"Pipeline '{pipeline.slug}' has no version yet.")
    return version


def runs_only_deployed(environment: Environment) -> bool:
    """Production and protected stages run only what was deployed there (through a promotion)."""
    return environment.is_protected or environment.kind == Kind.PRODUCTION


def _require_deployed(pipeline, environment, version: PipelineVersion | None) -> PipelineVersion:
    deployment = active_deployment(pipeline, environment)
    if deployment is None:
        raise field_error(
            "version", f"No version of '{pipeline.slug}' is deployed in '{environment.slug}'; promote one first."
        )
    if version is not None and version.pk != deployment.version_id:
        raise field_error(
            "version",
            f"'{environment.slug}' runs only its deployed version (v{deployment.version.number}); "
            f"promote v{version.number} to run it there.",
        )
    return deployment.version


def sample_answer(environment: Environment) -> Answer:
    """May a run in `environment` ask for a sample? A sample changes how much a run reads at run time,
    so it needs a policy that allows run-time overrides (production's does not: a sampled run would
    write a partial table where the real one lives). Stages whose policy samples always sample
    (execution's `_limits`); there asking is allowed and changes nothing."""
    policy = getattr(environment, "policy", None)
    if policy is not None and not policy.allow_runtime_overrides:
        message = f"The policy of '{environment.slug}' refuses run-time overrides: runs there do not sample on request."
        return refused(field_error("sample", message), "the policy refuses run-time overrides")
    return ALLOWED


def destination_violations(resolved: Mapping[str, Any], allowed: list[str]) -> list[str]:
    """Destinations the policy does not allow (by connection role name or connection kind)."""
    if not allowed:
        return []
    problems = []
    for node in resolved["graph"]["nodes"]:
        if node["type"] != "destination":
            continue
        role = node["connection"]
        kind = resolved["connections"].get(role, {}).get("kind")
        if role not in allowed and kind not in allowed:
            problems.append(f"destination '{node['id']}' writes to '{role}' ({kind}), not in allowed_destinations")
    return problems


# Runs a member starts themselves take their personal values (development only); schedules and
# validation runs (the evidence promotions rely on) resolve the shared configuration.
PERSONAL_TRIGGERS = (Trigger.MANUAL, Trigger.API)


def personal_user(user, trigger: str):
    """The member whose personal overrides apply to a run with this trigger, or None."""
    return user if trigger in PERSONAL_TRIGGERS else None


def run_create(
    *,
    actor: User,
    pipeline: Pipeline,
    environment: Environment | None = None,
    version: PipelineVersion | None = None,
    parameters: dict | None = None,
    sample: bool = False,
    trigger: str = Trigger.MANUAL,
    executor_kind: str = Executor.BUILTIN,
    idempotency_key: str = "",
    idempotency_fingerprint: str = "",
    upstream: Run | None = None,
) -> Run:
    """Create a run and queue it, or record it as rejected when the policy forbids it. Nothing is
    ever written by a rejected run; configuration errors refuse the request (400)."""
    environment = environment or pipeline.project.default_environment
    if environment is None:
        raise field_error("environment", "Name an environment (the project has no default environment).")
    require_own_environment(pipeline, environment)
    perms.require(actor, perms.RUN, environment)
    if version is not None and version.pipeline_id != pipeline.pk:
        raise field_error("version", "The version belongs to another pipeline.")
    if runs_only_deployed(environment):
        version = _require_deployed(pipeline, environment, version)
    elif version is None:
        version = _default_version(pipeline, environment)
    if parameters is not None and not isinstance(parameters, dict):
        raise field_error("parameters", "Give an object of variable names to values.")
    if sample:
        sample_answer(environment).enforce()
    resolved = engine.resolve(
        pipeline, environment, version=version, parameters=parameters or {}, personal_user=personal_user(actor, trigger)
    )
    if resolved["errors"]:
        first = resolved["errors"][0]
        raise ValidationFailed(
            f"The configuration does not resolve in '{environment.slug}': {first['message']}",
            fields={first["path"]: [e["message"] for e in resolved["errors"] if e["path"] == first["path"]]},
            code="not_ready",
        )
    run = Run(
        pipeline=pipeline,
        version=version,
        environment=environment,
        trigger=trigger,
        upstream=upstream,
        executor=executor_kind,
        requested_by=actor,
        parameters=parameters or {},
        sample=sample,
        resolved=resolved,
        deployment=active_deployment(pipeline, environment),
        idempotency_key=idempotency_key,
        idempotency_fingerprint=idempotency_fingerprint,
    )
    violations = destination_violations(resolved, resolved["policy"].get("allowed_destinations") or [])
    with transaction.atomic():
        if violations:
            run.reject_by_policy(
                error="Rejected by the runtime policy: " + "; ".join(violations) + ".", now=timezone.now()
            )
            run.save()
            environment_emit(environment, "policy.violated", _event(run, reason=run.error))
            return run
        run.save()
        if executor_kind == Executor.BUILTIN:
            transaction.on_commit(lambda: dispatch(run.pk), robust=True)
    return run


def run_create_once(*, actor: User, pipeline: Pipeline, idempotency_key: str, **fields) -> tuple[Run, bool]:
    """run_create with an Idempotency-Key: returns (run, created); a retried call with the same key
    and body returns the first run, the same key with another body is a 409."""
    body = idempotency.fingerprint(
        pipeline=pipeline.pk,
        **{name: getattr(value, "pk", value) for name, value in fields.items()},
    )
    return idempotency.create_once(
        queryset=Run.objects.filter(requested_by=actor),
        key=idempotency_key,
        body_fingerprint=body,
        create=lambda: run_create(
            actor=actor,
            pipeline=pipeline,
            idempotency_key=idempotency_key,
            idempotency_fingerprint=body if idempotency_key else "",
            **fields,
        ),
        what="run",
    )


def dispatch(run_pk: int) -> None:
    """Wake a worker for a queued run (apps.core.queue: the sweep dispatches it if the broker is down)."""
    from ..tasks import execute_run

    Run.objects.filter(pk=run_pk).update(dispatched_at=timezone.now())
    enqueue(execute_run, [run_pk])


def _event(run: Run, **extra) -> dict:
    return {
        "run": {"id": run.pk, "status": run.status, "trigger": run.trigger},
        "pipeline": {"id": run.pipeline_id, "slug": run.pipeline.slug},
        "version": run.version.number,
        **extra,
    }


RUN_ACTIONS = ("cancel", "rerun")


def _run_permission(user, run: Run) -> Answer | None:
    if perms.may(user, perms.RUN, run.environment):
        return None
    message = f"You lack the '{perms.RUN}' permission on environment '{run.environment.slug}'."
    return refused(
        PermissionDenied(message, code="permission_denied"), f"you lack {perms.RUN} on '{run.environment.slug}'"
    )


def _rerun_answer(run: Run) -> Answer:
    if run.status not in TERMINAL:
        return refused(
            Conflict(f"Run {run.pk} is {run.status}: rerun it once it has finished."), f"the run is {run.status}"
        )
    if runs_only_deployed(run.environment):
        deployment = active_deployment(run.pipeline, run.environment)
        if deployment is None or deployment.version_id != run.version_id:
            message = (
                f"'{run.environment.slug}' runs only its deployed version; v{run.version.number} is not deployed there."
            )
            return refused(field_error("version", message), message)
    return ALLOWED


def run_actions(user, run: Run) -> dict[str, Answer]:
    """For each of RUN_ACTIONS: allowed, or why not (and the error the service raises). The services
    enforce it; the API and the admin render it."""
    permission = _run_permission(user, run)
    cancel = None
    if not can_proceed(run.cancel):
        cancel = refused(Conflict(f"Run {run.pk} is already {run.status}."), f"the run is already {run.status}")
    return {
        "cancel": permission or cancel or ALLOWED,
        "rerun": permission or _rerun_answer(run),
    }


def run_cancel(*, actor: User, run: Run) -> Run:
    """Cancel a queued run at once; a running one stops at its next batch."""
    with transaction.atomic():
        run = Run.objects.select_for_update(of=("self",)).select_related("environment").get(pk=run.pk)
        run_actions(actor, run)["cancel"].enforce()
        run.cancel(now=timezone.now())
        run.save(update_fields=["status", "finished_at", "cancel_requested"])
    return run


def run_rerun(*, actor: User, run: Run) -> Run:
    """Start a new run like a finished one (same pipeline, environment, version, parameters, sample,
    executor), requested by `actor`."""
    run_actions(actor, run)["rerun"].enforce()
    return run_create(
        actor=actor,
        pipeline=run.pipeline,
        environment=run.environment,
        version=run.version,
        parameters=run.parameters,
        sample=run.sample,
        trigger=Trigger.VALIDATION if run.trigger == Trigger.VALIDATION else Trigger.MANUAL,
        executor_kind=run.executor,
    )


# --- the sweep --------------------------------------------------------------------------------


def runs_sweep(now: datetime | None = None) -> dict:
    """Re-dispatch queued runs nobody picked up, and take back running runs whose worker (or
    external engine) stopped renewing its lease: requeue them, cancel them if a cancel was asked
    for, or fail them after RUN_MAX_ATTEMPTS (with the run.failed event)."""
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.RUN_DISPATCH_GRACE_SECONDS)
    requeued, failed = [], []
    with transaction.atomic():
        for run in Run.objects.select_for_update(skip_locked=True).filter(
            status=RunStatus.RUNNING, lease_expires_at__lt=now
        ):
            run.reclaim(now=now, max_attempts=settings.RUN_MAX_ATTEMPTS)
            if run.status == RunStatus.QUEUED:
                # An external engine that stops reporting loses its claim: another may claim the run.
                if run.executor == Executor.BUILTIN:
                    requeued.append(run.pk)
                run.save(update_fields=["status", "claimed_by"])
                continue
            if run.status == RunStatus.FAILED:
                failed.append(run)
            run.save(update_fields=["status", "error", "finished_at", "lease_expires_at"])
        for run in failed:
            environment_emit(run.environment, "run.failed", _event(run, error=run.error))
    waiting = list(
        Run.objects.filter(status=RunStatus.QUEUED, executor=Executor.BUILTIN, cancel_requested=False)
        .filter(dispatched_at__lt=stale)
        .values_list("pk", flat=True)[:500]
    )
    never = list(
        Run.objects.filter(
            status=RunStatus.QUEUED, executor=Executor.BUILTIN, dispatched_at__isnull=True, created_at__lt=stale
        ).values_list("pk", flat=True)[:500]
    )
    for pk in {*requeued, *waiting, *never}:
        dispatch(pk)
    return {"requeued": len(requeued), "redispatched": len(set(waiting) | set(never))}
