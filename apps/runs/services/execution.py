"""Executing runs: the built-in worker's claim, limits, lease and finish; external executors' claim
and report; previews of a source node. Every output leaves through the masker of its secrets."""

import logging
import threading
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_fsm import can_proceed

from apps.core.actions import ALLOWED, Answer, refused
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed, field_error
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment, Kind
from apps.environments.services import environment_emit
from apps.pipelines.models import Pipeline
from apps.resolution import engine
from apps.resolution import services as resolution_services
from apps.resolution.answer import Answer as Resolution
from apps.secrets import services as secret_services
from apps.secrets.masking import SecretMasker

from .. import executor
from ..models import Executor, Run, RunStatus, Trigger
from ..run_log import RunLog
from .baselines import compare_with_baseline
from .runs import _default_version, _event, destination_violations, personal_user, runs_only_deployed
from .triggers import triggers_fire_on_success

logger = logging.getLogger("planasonix.runs")


# --- executing --------------------------------------------------------------------------------


def _materialized(actor, run: Run) -> Resolution:
    """The run's configuration with its secrets materialized for `actor` (the worker or the external
    engine acting for the run), with the personal values of the member who started it."""
    return resolution_services.resolve_for_executor(
        actor,
        run.pipeline,
        run.environment,
        version=run.version,
        parameters=run.parameters,
        personal_user=personal_user(run.requested_by, run.trigger),
    )


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
        self._thread: threading.Thread | None = None

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
            mine = personal_user(actor, run.trigger)
            if perms.may(actor, perms.USE_CREDENTIALS, run.environment):
                resolved = _materialized(actor, run)
            else:
                resolved = engine.resolve(
                    run.pipeline, run.environment, version=run.version, parameters=run.parameters, personal_user=mine
                )
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
                resolved,
                _limits(run, policy),
                check,
                RunLog(log_lines, policy.get("log_level")),
                environment=run.environment,
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
        if status == RunStatus.SUCCEEDED:
            triggers_fire_on_success(run)
        event = "run.succeeded" if status == RunStatus.SUCCEEDED else "run.failed"
        if status in (RunStatus.SUCCEEDED, RunStatus.FAILED):
            environment_emit(run.environment, event, masker.mask(_event(run, error=run.error or None)))
        elif status == RunStatus.REJECTED:
            environment_emit(run.environment, "policy.violated", masker.mask(_event(run, reason=run.error)))
    return run


# --- external executors -----------------------------------------------------------------------


def run_claim_external(*, actor: User, run: Run, claimer: str) -> tuple[Run, Resolution]:
    """An external engine takes a queued external run. Returns the run and the configuration it
    needs: with secrets only for a claimer holding use_environment_credentials there."""
    perms.require(actor, perms.RUN, run.environment)
    if run.executor != Executor.EXTERNAL:
        raise Conflict(f"Run {run.pk} is executed by the built-in executor.")
    if run.status != RunStatus.QUEUED:
        raise Conflict(f"Run {run.pk} is not queued (it is {run.status}).")
    # Resolve before claiming: a configuration that does not resolve must not leave the run running.
    if perms.may(actor, perms.USE_CREDENTIALS, run.environment):
        resolved = _materialized(actor, run)
        if resolved["errors"]:
            raise Conflict(f"Run {run.pk} cannot start: {resolved['errors'][0]['message']}")
    else:
        resolved = run.resolved
    claimed = _claim(run.pk, claimer)
    if claimed is None:
        raise Conflict(f"Run {run.pk} is not queued (it is {Run.objects.get(pk=run.pk).status}).")
    return claimed, resolved


def run_report_external(
    *, actor: User, run: Run, claimer: str, status: str, metrics=None, log_excerpt: str = "", error: str = ""
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


def preview(*, actor: User, pipeline: Pipeline, environment: Environment, node_id: str, limit: int = 20) -> dict:
    """The first rows of a source node, in a non-protected, non-production environment. The rows,
    and any error, leave through the masker of the secrets this preview materialized."""
    with SecretMasker() as masker:
        try:
            return masker.mask(_preview(actor, pipeline, environment, node_id, limit))
        except ValidationFailed as exc:  # `from None`: the cause may quote the value
            raise ValidationFailed(
                masker.mask_text(exc.message), fields=masker.mask(exc.fields), code=exc.code
            ) from None


def preview_answer(actor: User, environment: Environment) -> Answer:
    """May `actor` preview data in `environment`: run_in_environment there, and a stage that is
    neither protected nor production (those run only what was deployed)."""
    if not perms.may(actor, perms.RUN, environment):
        message = f"You lack the '{perms.RUN}' permission on environment '{environment.slug}'."
        return refused(PermissionDenied(message, code="permission_denied"), f"you lack {perms.RUN}")
    if runs_only_deployed(environment):
        message = f"Previews are not allowed in '{environment.slug}' (protected or production)."
        return refused(PermissionDenied(message), "protected or production")
    return ALLOWED


def _preview(actor: User, pipeline: Pipeline, environment: Environment, node_id: str, limit: int) -> dict:
    preview_answer(actor, environment).enforce()
    if not 1 <= limit <= 200:
        raise field_error("limit", "Between 1 and 200.")
    version = _default_version(pipeline, environment)
    # A preview is the actor's own: their personal values apply (development only).
    if perms.may(actor, perms.USE_CREDENTIALS, environment):
        resolved = resolution_services.resolve_for_executor(
            actor, pipeline, environment, version=version, personal_user=actor
        )
    else:
        resolved = engine.resolve(pipeline, environment, version=version, personal_user=actor)
    nodes = resolved["graph"]["nodes"] if resolved["graph"] else []  # a version always has a graph
    node = next((n for n in nodes if n["id"] == node_id), None)
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
