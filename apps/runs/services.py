"""Deployments, runs (create, dispatch, execute, cancel, claim, report), baselines, previews and
schedules. Runs are the outbox: the row is the truth and Celery only the wake-up call."""

import logging
import threading
import zoneinfo
from datetime import datetime, timedelta

from croniter import croniter
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.utils import timezone
from django_fsm import can_proceed

from apps.core import idempotency
from apps.core.actions import ALLOWED, Answer, refused
from apps.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed, field_error
from apps.core.services import audited_delete, audited_save, validate
from apps.environments import permissions as perms
from apps.environments.models import Environment, Kind
from apps.environments.services import active_freeze, environment_emit
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.resolution import engine
from apps.resolution import services as resolution_services
from apps.secrets import services as secret_services
from apps.secrets.masking import SecretMasker

from . import datadiff, executor
from .models import TERMINAL, Deployment, Executor, Run, RunStatus, Schedule, ScheduleFire, Trigger

logger = logging.getLogger("planasonix.runs")

# Hooks for apps above this one (approvals): callables (pipeline, environment) -> str | None; a
# non-empty answer means "deploying this pipeline here needs a promotion" and is the reason shown.
direct_deploy_guards: list = []


# --- deployments ------------------------------------------------------------------------------


def active_deployment(pipeline, environment) -> Deployment | None:
    return Deployment.objects.filter(pipeline=pipeline, environment=environment, is_active=True).first()


def deploy(
    *,
    actor,
    pipeline: Pipeline,
    environment: Environment,
    version: PipelineVersion,
    promotion_request_id: int | None = None,
    note: str = "",
    resolved: dict | None = None,
) -> Deployment:
    """Make `version` the active deployment of the pipeline in the environment (caller checks who
    may). Deactivates the previous one, links it, and switches the environment's schedules on.
    Keeps the configuration it deploys with (`resolved`, a redacted config view; resolved here when
    the caller has none)."""
    if version.pipeline_id != pipeline.pk:
        raise field_error("version", "The version belongs to another pipeline.")
    if environment.organization_id != pipeline.project.organization_id:
        raise field_error("environment", "The environment belongs to another organization.")
    # No savepoint of its own: a caller's transaction (a promotion's deploying step) rolls back whole.
    with transaction.atomic(savepoint=False):
        previous = (
            Deployment.objects.select_for_update()
            .filter(pipeline=pipeline, environment=environment, is_active=True)
            .first()
        )
        if previous is not None:
            previous.is_active = False
            previous.deactivated_at = timezone.now()
            audited_save(previous, actor=actor, reason="superseded", clean=False)
        deployment = Deployment(
            pipeline=pipeline,
            environment=environment,
            version=version,
            deployed_by=actor,
            previous=previous,
            promotion_request_id=promotion_request_id,
            note=note,
        )
        deployment.resolved = (
            resolved
            if resolved is not None
            else engine.config_view(engine.resolve(pipeline, environment, version=version))
        )
        try:
            with transaction.atomic():
                audited_save(deployment, actor=actor, reason=note or "deployed", clean=False)
        except IntegrityError as exc:
            raise Conflict("Another deployment of this pipeline into this environment is in progress.") from exc
        for schedule in Schedule.objects.filter(pipeline=pipeline, environment=environment, enabled=False):
            schedule.enabled = True
            audited_save(schedule, actor=actor, reason=f"switched on by deploying v{version.number}", clean=False)
    return deployment


DEPLOYMENT_ACTIONS = ("rollback",)


def deployment_actions(user, deployment: Deployment) -> dict[str, Answer]:
    """For each of DEPLOYMENT_ACTIONS: allowed, or why not. Rolling back needs manage_environment
    (`user=None` is the platform's automatic rollback), an active deployment and one before it."""
    environment = deployment.environment
    if user is not None and not perms.may(user, perms.MANAGE, environment):
        message = f"You lack the '{perms.MANAGE}' permission on environment '{environment.slug}'."
        rollback = refused(
            PermissionDenied(message, code="permission_denied"), f"you lack {perms.MANAGE} on '{environment.slug}'"
        )
    elif not deployment.is_active:
        rollback = refused(Conflict("Only the active deployment can be rolled back.", code="not_active"))
    elif deployment.previous_id is None:
        rollback = refused(Conflict("There is no earlier deployment to roll back to.", code="nothing_to_roll_back_to"))
    else:
        rollback = ALLOWED
    return {"rollback": rollback}


def deploy_direct(*, actor, pipeline: Pipeline, environment: Environment, version: PipelineVersion) -> Deployment:
    """Deploy without a promotion: only where no approval rule applies and the stage is not protected
    (config editors; manage_environment too while the environment is locked)."""
    perms.require_config_edit(actor, environment)
    if environment.is_protected:
        raise PermissionDenied(f"'{environment.slug}' is protected: deploy to it through a promotion request.")
    window = active_freeze(environment)
    if window is not None:
        raise Conflict(f"'{environment.slug}' is in a freeze window ({window.reason}); deployments are blocked.")
    for guard in direct_deploy_guards:
        reason = guard(pipeline, environment)
        if reason:
            raise PermissionDenied(reason)
    return deploy(actor=actor, pipeline=pipeline, environment=environment, version=version, note="direct deploy")


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


def destination_violations(resolved: dict, allowed: list[str]) -> list[str]:
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


def run_create(
    *,
    actor,
    pipeline: Pipeline,
    environment: Environment | None = None,
    version: PipelineVersion | None = None,
    parameters: dict | None = None,
    sample: bool = False,
    trigger: str = Trigger.MANUAL,
    executor_kind: str = Executor.BUILTIN,
    idempotency_key: str = "",
    idempotency_fingerprint: str = "",
) -> Run:
    """Create a run and queue it, or record it as rejected when the policy forbids it. Nothing is
    ever written by a rejected run; configuration errors refuse the request (400)."""
    environment = environment or pipeline.project.default_environment
    if environment is None:
        raise field_error("environment", "Name an environment (the project has no default environment).")
    if environment.organization_id != pipeline.project.organization_id:
        raise field_error("environment", "The environment belongs to another organization.")
    perms.require(actor, perms.RUN, environment)
    if version is not None and version.pipeline_id != pipeline.pk:
        raise field_error("version", "The version belongs to another pipeline.")
    if runs_only_deployed(environment):
        version = _require_deployed(pipeline, environment, version)
    elif version is None:
        version = _default_version(pipeline, environment)
    if parameters is not None and not isinstance(parameters, dict):
        raise field_error("parameters", "Give an object of variable names to values.")
    resolved = engine.resolve(pipeline, environment, version=version, parameters=parameters or {})
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


def run_create_once(*, actor, pipeline: Pipeline, idempotency_key: str, **fields) -> tuple[Run, bool]:
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
    """Wake a worker for a queued run (the sweep retries if the broker is down)."""
    from .tasks import execute_run

    Run.objects.filter(pk=run_pk).update(dispatched_at=timezone.now())
    try:
        execute_run.delay(run_pk)
    except Exception:  # broker down: the row stays queued and the sweep dispatches it later
        logger.warning("could not dispatch run %s; the sweep will", run_pk)


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


def run_cancel(*, actor, run: Run) -> Run:
    """Cancel a queued run at once; a running one stops at its next batch."""
    with transaction.atomic():
        run = Run.objects.select_for_update(of=("self",)).select_related("environment").get(pk=run.pk)
        run_actions(actor, run)["cancel"].enforce()
        run.cancel(now=timezone.now())
        run.save(update_fields=["status", "finished_at", "cancel_requested"])
    return run


def run_rerun(*, actor, run: Run) -> Run:
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


# --- executing --------------------------------------------------------------------------------


def _claim(run_pk: int, claimer: str) -> Run | None:
    now = timezone.now()
    with transaction.atomic():
        run = Run.objects.select_for_update(skip_locked=True).filter(pk=run_pk).first()
        if run is None or not can_proceed(run.claim):  # taken, finished, or asked to cancel
            return None
        run.claim(claimer=claimer, now=now, lease_until=now + timedelta(seconds=settings.RUN_LEASE_SECONDS))
        run.save(update_fields=["status", "claimed_by", "started_at", "attempts", "lease_expires_at"])
        return run


def _limits(run: Run, policy: dict) -> executor.Limits:
    """Environments whose policy samples always sample; a run asking for a sample elsewhere reads
    RUN_DEFAULT_SAMPLE_ROWS rows per source. max_rows caps every run."""
    limits = executor.Limits(max_rows=policy.get("max_rows"))
    percent = policy.get("sample_percent")
    limits.sample_rows = policy.get("sample_rows")
    limits.sample_percent = float(percent) if percent is not None else None
    if run.sample and limits.sample_rows is None and limits.sample_percent is None:
        limits.sample_rows = settings.RUN_DEFAULT_SAMPLE_ROWS
    return limits


class LeaseKeeper:
    """Keeps a running run's lease while its worker is alive: a thread renews it every third of
    RUN_LEASE_SECONDS, so that a single statement longer than the lease (a slow source query, a big
    insert) does not let the sweep hand the run to another worker. The attempt number fences every
    renewal: once another attempt holds the run, `lost` is set and the worker stops before it
    commits anything (executor.write_destination checks just before COMMIT)."""

    def __init__(self, run_pk: int, attempt: int):
        self.run_pk, self.attempt = run_pk, attempt
        self.lost = threading.Event()
        self._stop = threading.Event()
        self._thread = None

    def renew(self) -> bool:
        renewed = Run.objects.filter(pk=self.run_pk, status=RunStatus.RUNNING, attempts=self.attempt).update(
            lease_expires_at=timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)
        )
        if not renewed:
            self.lost.set()
        return bool(renewed)

    def _beat(self) -> None:
        interval = settings.RUN_LEASE_SECONDS / 3
        try:
            while not self._stop.wait(interval):
                try:
                    if not self.renew():
                        return
                except Exception:  # the database is briefly unreachable: try again at the next beat
                    logger.warning("run %s: could not renew the lease", self.run_pk, exc_info=True)
        finally:
            connection.close()  # this thread's own connection

    def start(self) -> "LeaseKeeper":
        # Inside a transaction (a caller's atomic block) another connection could not see the run;
        # then the lease is renewed between batches only.
        if not connection.in_atomic_block:
            self._thread = threading.Thread(target=self._beat, name=f"run-{self.run_pk}-lease", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def run_execute(run_pk: int, claimer: str = "builtin") -> Run | None:
    """Execute a queued run in this worker (safe to call twice: only one claim succeeds)."""
    run = _claim(run_pk, claimer)
    if run is None:
        return None
    log_lines: list[str] = []
    attempt = run.attempts
    resolved = None
    lease = LeaseKeeper(run.pk, attempt).start()

    def check() -> None:
        state = Run.objects.filter(pk=run.pk).values_list("cancel_requested", flat=True).first()
        if state:
            raise executor.Cancelled
        # The attempt number fences the lease: once the sweep has requeued this run and another
        # worker claimed it, this (slow, not dead) worker must stop and roll its write back.
        if lease.lost.is_set() or not lease.renew():
            raise executor.LeaseLost

    with SecretMasker() as masker:  # collects every value materialized below; _finish masks with it
        try:
            actor = run.requested_by
            if actor is None:
                raise executor.ExecutionError("The run has no requester to act for.")
            # Secrets are materialized here, in the worker, for a requester allowed to use them; they
            # live only in this frame.
            if perms.may(actor, perms.USE_CREDENTIALS, run.environment):
                resolved = resolution_services.resolve_for_executor(
                    actor, run.pipeline, run.environment, version=run.version, parameters=run.parameters
                )
            else:
                resolved = engine.resolve(run.pipeline, run.environment, version=run.version, parameters=run.parameters)
                needs = [n for n, c in resolved["connections"].items() if c.get("credential")]
                if needs:
                    raise executor.ExecutionError(
                        f"Connections {', '.join(sorted(needs))} need credentials, and the requester lacks "
                        f"use_environment_credentials in '{run.environment.slug}'."
                    )
            if resolved["errors"]:
                raise executor.ExecutionError(f"Configuration error: {resolved['errors'][0]['message']}")
            # The policy in force now, not the snapshot taken when the run was queued: a run queued
            # (or requeued by the sweep) before the policy was tightened must not write where it forbids.
            policy = resolved["policy"]
            violations = destination_violations(resolved, policy.get("allowed_destinations") or [])
            if violations:
                error = "Rejected by the runtime policy: " + "; ".join(violations) + "."
                return _finish(run, RunStatus.REJECTED, error=error, attempt=attempt, masker=masker)
            metrics = executor.execute_graph(
                resolved, _limits(run, policy), check, log_lines.append, environment=run.environment
            )
            return _finish(
                run, RunStatus.SUCCEEDED, metrics=metrics, log="\n".join(log_lines), attempt=attempt, masker=masker
            )
        except executor.LeaseLost:
            logger.warning("run %s attempt %s lost its lease to another attempt; stopped", run.pk, attempt)
            return Run.objects.get(pk=run.pk)
        except executor.Cancelled:
            log = "\n".join(log_lines)
            return _finish(run, RunStatus.CANCELLED, error="Cancelled.", log=log, attempt=attempt, masker=masker)
        except executor.ExecutionError as exc:
            log = "\n".join(log_lines)
            return _finish(run, RunStatus.FAILED, error=str(exc), log=log, attempt=attempt, masker=masker)
        except Exception as exc:  # driver errors: the type and a (masked) message
            logger.warning("run %s failed: %s", run.pk, type(exc).__name__)
            log = "\n".join(log_lines)
            return _finish(run, RunStatus.FAILED, error=_error_text(exc), log=log, attempt=attempt, masker=masker)
        finally:
            lease.stop()


def _error_text(exc: Exception) -> str:
    """A driver error as users see it (masked where it is recorded or returned)."""
    return f"{type(exc).__name__}: {str(exc)[:1000]}"


def _finish(
    run: Run,
    status: str,
    *,
    masker: SecretMasker,
    metrics=None,
    error: str = "",
    log: str = "",
    attempt: int | None = None,
) -> Run:
    """Record a running run's outcome; `attempt` (built-in workers) must still hold the claim.

    The one place a run's output leaves the executor: metrics, error, log and the event payload
    are recorded through `masker` (every secret value the run materialized, in its encodings)."""
    metrics, error, log = masker.mask(metrics or {}), masker.mask_text(error), masker.mask_text(log)
    with transaction.atomic():
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("pipeline", "version", "environment")
            .get(pk=run.pk)
        )
        if not can_proceed(run.finish) or (attempt is not None and run.attempts != attempt):
            return run
        run.finish(status=status, metrics=metrics, error=error, log=log, now=timezone.now())
        if (status == RunStatus.SUCCEEDED and run.trigger == Trigger.VALIDATION) or (
            status == RunStatus.SUCCEEDED and run.environment.kind == Kind.STAGING
        ):
            run.baseline = compare_with_baseline(run)
        run.save()
        event = "run.succeeded" if status == RunStatus.SUCCEEDED else "run.failed"
        if status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            environment_emit(run.environment, event, masker.mask(_event(run, error=run.error or None)))
        elif status == RunStatus.REJECTED:
            environment_emit(run.environment, "policy.violated", masker.mask(_event(run, reason=run.error)))
    return run


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
    diffs = datadiff.run_data_diff(run, baseline)
    if baseline is None:
        failing = datadiff.failures(diffs)
        return {
            "baseline_run": None,
            "passed": False if failing else None,
            "reason": "No successful production run to compare with."
            + (f" Expectations failed: {'; '.join(failing)}." if failing else ""),
            "data_diff": diffs,
        }
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
        columns_ok = diffs.get(node_id, {}).get("passed", True)
        ok = within and keys_ok and columns_ok and (hash_equal or not require_hash)
        passed = passed and ok
        destinations[node_id] = {
            "row_count": rows,
            "baseline_row_count": base_rows,
            "row_delta": delta,
            "row_delta_percent": round(100 * delta / base_rows, 3) if base_rows else None,
            "within_tolerance": within,
            "keys_unique": metrics.get("keys_unique"),
            "hash_equal": hash_equal,
            "columns_passed": columns_ok,
            "passed": ok,
        }
    return {
        "baseline_run": baseline.pk,
        "baseline_environment": baseline.environment.slug,
        "tolerance_percent": tolerance,
        "require_hash": require_hash,
        "destinations": destinations,
        "data_diff": diffs,
        "passed": passed,
    }


# --- external executors -----------------------------------------------------------------------


def run_claim_external(*, actor, run: Run, claimer: str) -> tuple[Run, dict]:
    """An external engine takes a queued external run. Returns the run and the configuration it
    needs: with secrets only for a claimer holding use_environment_credentials there."""
    perms.require(actor, perms.RUN, run.environment)
    if run.executor != Executor.EXTERNAL:
        raise Conflict(f"Run {run.pk} is executed by the built-in executor.")
    if run.status != RunStatus.QUEUED:
        raise Conflict(f"Run {run.pk} is not queued (it is {run.status}).")
    # Resolve before claiming: a configuration that does not resolve must not leave the run running.
    if perms.may(actor, perms.USE_CREDENTIALS, run.environment):
        resolved = resolution_services.resolve_for_executor(
            actor, run.pipeline, run.environment, version=run.version, parameters=run.parameters
        )
        if resolved["errors"]:
            raise Conflict(f"Run {run.pk} cannot start: {resolved['errors'][0]['message']}")
    else:
        resolved = run.resolved
    claimed = _claim(run.pk, claimer)
    if claimed is None:
        raise Conflict(f"Run {run.pk} is not queued (it is {Run.objects.get(pk=run.pk).status}).")
    return claimed, resolved


def run_report_external(
    *, actor, run: Run, claimer: str, status: str, metrics=None, log_excerpt: str = "", error: str = ""
) -> Run:
    perms.require(actor, perms.RUN, run.environment)
    if status not in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.RUNNING):
        raise field_error("status", "One of running, succeeded, failed.")
    # The engine was handed the run's secrets when it claimed it: what it reports is masked for them.
    masker = secret_services.masker_for(run.environment.organization_id, engine.secret_references(run.resolved))
    with transaction.atomic():
        locked = Run.objects.select_for_update().get(pk=run.pk)
        if locked.status != RunStatus.RUNNING or locked.claimed_by != claimer:
            raise Conflict(f"Run {run.pk} is {locked.status} and not claimed by this key.")
        if locked.cancel_requested:
            status, error = RunStatus.CANCELLED, "Cancelled."
        elif status == RunStatus.RUNNING:
            locked.lease_expires_at = timezone.now() + timedelta(seconds=settings.RUN_LEASE_SECONDS)
            locked.log_excerpt = masker.mask_text(log_excerpt or locked.log_excerpt)[-20000:]
            locked.save(update_fields=["lease_expires_at", "log_excerpt"])
            return locked
    if metrics is not None and not isinstance(metrics, dict):
        raise field_error("metrics", "An object of destination node id to metrics.")
    return _finish(run, status, metrics=metrics, error=error, log=log_excerpt, masker=masker)


# --- preview ----------------------------------------------------------------------------------


def preview(*, actor, pipeline: Pipeline, environment: Environment, node_id: str, limit: int = 20) -> dict:
    """The first rows of a source node, in a non-protected, non-production environment. The rows,
    and any error, leave through the masker of the secrets this preview materialized."""
    with SecretMasker() as masker:
        try:
            return masker.mask(_preview(actor, pipeline, environment, node_id, limit))
        except ValidationFailed as exc:  # `from None`: the cause may quote the value
            raise ValidationFailed(
                masker.mask_text(exc.message), fields=masker.mask(exc.fields), code=exc.code
            ) from None


def _preview(actor, pipeline: Pipeline, environment: Environment, node_id: str, limit: int) -> dict:
    perms.require(actor, perms.RUN, environment)
    if environment.is_protected or environment.kind == Kind.PRODUCTION:
        raise PermissionDenied(f"Previews are not allowed in '{environment.slug}' (protected or production).")
    if not 1 <= limit <= 200:
        raise field_error("limit", "Between 1 and 200.")
    version = _default_version(pipeline, environment)
    if perms.may(actor, perms.USE_CREDENTIALS, environment):
        resolved = resolution_services.resolve_for_executor(actor, pipeline, environment, version=version)
    else:
        resolved = engine.resolve(pipeline, environment, version=version)
    node = next((n for n in resolved["graph"]["nodes"] if n["id"] == node_id), None)
    if node is None or node["type"] != "source":
        raise field_error("node", f"No source node '{node_id}' in version {version.number}.")
    if resolved["errors"]:
        raise ValidationFailed(f"The configuration does not resolve: {resolved['errors'][0]['message']}")
    binding = resolved["connections"][node["connection"]]
    try:
        conn = executor.connect(
            binding["kind"], binding["params"], binding.get("credential_value"), environment=environment
        )
        try:
            batches = executor.read_source(
                conn, node["query"], executor.Limits(max_rows=limit, batch_size=limit), lambda: None
            )
            columns, rows = [], []
            for batch_columns, batch in batches:
                columns = batch_columns
                rows.extend([[executor.canonical_value(v) for v in row] for row in batch])
        finally:
            conn.close()
    except executor.ExecutionError as exc:
        raise ValidationFailed(str(exc)) from exc
    except Exception as exc:
        raise ValidationFailed(f"The source could not be read: {_error_text(exc)}") from exc
    return {"version": version.number, "node": node_id, "columns": columns, "rows": rows[:limit]}


# --- schedules --------------------------------------------------------------------------------


def schedule_save(
    *,
    actor,
    pipeline: Pipeline,
    environment: Environment,
    cron: str,
    timezone_name: str = "UTC",
    enabled: bool | None = None,
    schedule: Schedule | None = None,
) -> Schedule:
    """Create or change a schedule (see require_schedule_edit)."""
    require_schedule_edit(actor, environment)
    if environment.organization_id != pipeline.project.organization_id:
        raise field_error("environment", "The environment belongs to another organization.")
    schedule = schedule or Schedule(pipeline=pipeline, environment=environment, owner=actor)
    schedule.cron, schedule.timezone = cron, timezone_name
    if enabled is not None:
        schedule.enabled = enabled
    elif schedule.pk is None:
        schedule.enabled = active_deployment(pipeline, environment) is not None
    validate(schedule)
    with transaction.atomic():
        audited_save(schedule, actor=actor, reason="schedule saved", clean=False)
    return schedule


def require_schedule_edit(actor, environment: Environment) -> None:
    """Editing schedules needs manage_schedules, or change_environment_config in an environment that
    is not locked; a locked environment's schedules need manage_schedules itself."""
    if perms.may(actor, perms.MANAGE_SCHEDULES, environment):
        return
    policy = getattr(environment, "policy", None)
    if policy is not None and policy.locked:
        perms.require(actor, perms.MANAGE_SCHEDULES, environment)
    if not perms.may(actor, perms.CHANGE_CONFIG, environment):
        perms.require(actor, perms.MANAGE_SCHEDULES, environment)


@transaction.atomic
def schedule_delete(*, actor, schedule: Schedule) -> None:
    """Delete a schedule (same rule as editing it)."""
    require_schedule_edit(actor, schedule.environment)
    audited_delete(schedule, actor=actor, reason="schedule deleted")


def due_ticks(schedule: Schedule, now: datetime) -> datetime | None:
    """The latest cron tick at or before `now` that has not fired yet (missed older ticks are skipped)."""
    tz = zoneinfo.ZoneInfo(schedule.timezone)
    local_now = now.astimezone(tz)
    tick = croniter(schedule.cron, local_now + timedelta(seconds=1)).get_prev(datetime)
    tick = tick.astimezone(zoneinfo.ZoneInfo("UTC"))
    floor = schedule.last_fired_for or schedule.created_at
    return tick if tick > floor else None


def schedules_fire_due(now: datetime | None = None) -> list[int]:
    """Create one run per due tick of every enabled schedule. Safe to run from several beats at
    once: the (schedule, tick) unique constraint lets exactly one of them create the run."""
    now = now or timezone.now()
    created = []
    for schedule in Schedule.objects.filter(enabled=True).select_related("pipeline__project", "environment", "owner"):
        try:
            tick = due_ticks(schedule, now)
        except Exception:  # one broken schedule must not stop every other one
            logger.exception("schedule %s: cannot compute its next tick", schedule.pk)
            continue
        if tick is None:
            continue
        try:
            with transaction.atomic():
                fire = ScheduleFire.objects.create(schedule=schedule, scheduled_for=tick)
                Schedule.objects.filter(pk=schedule.pk).update(last_fired_for=tick)
                run = run_create(
                    actor=schedule.owner,
                    pipeline=schedule.pipeline,
                    environment=schedule.environment,
                    trigger=Trigger.SCHEDULE,
                )
                fire.run = run
                fire.save(update_fields=["run"])
                created.append(run.pk)
        except IntegrityError:
            continue  # another beat fired this tick
        except (ValidationFailed, PermissionDenied, NotFound, Conflict) as exc:
            logger.warning("schedule %s could not start a run: %s", schedule.pk, exc.message)
            with transaction.atomic():
                ScheduleFire.objects.get_or_create(schedule=schedule, scheduled_for=tick)
                Schedule.objects.filter(pk=schedule.pk).update(last_fired_for=tick)
    return created


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
