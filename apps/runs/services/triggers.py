"""Triggers: downstream orchestration. A trigger starts a run of its pipeline in its environment on
success of another pipeline there (chains and fan-out; a cycle is refused naming the chain), or on a
signed inbound webhook. Editing them follows the schedules' rule (require_schedule_edit).

Exactly one downstream run per upstream success: when a run succeeds, `triggers_fire_on_success`
writes one TriggerFire per enabled trigger in the run's own finishing transaction (the unique
constraint on upstream run × trigger absorbs a second completion) and wakes the worker on commit;
`trigger_fires_start` turns each pending fire into its run under a row lock, so duplicate deliveries,
concurrent workers and the beat sweep start it once."""

import json
import logging
import secrets
from collections import defaultdict

from django.db import transaction
from django.utils import timezone

from apps.core import signing
from apps.core.errors import Conflict, DomainError, ValidationFailed, field_error
from apps.core.queue import enqueue
from apps.core.services import audited_delete, audited_save, first_unlocked, refuse_unknown, validate
from apps.core.signing import WebhookRefused
from apps.core.types import User
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline
from apps.secrets import services as secret_services
from apps.secrets.models import Secret

from ..models import PipelineTrigger, Run, Trigger, TriggerFire, TriggerKind
from .deployments import active_deployment, require_own_environment
from .runs import run_create, runs_only_deployed
from .schedules import require_schedule_edit

logger = logging.getLogger("planasonix.runs")

START_TASK = "apps.runs.tasks.start_triggered_runs"
SWEEP_BATCH = 500


# --- editing ----------------------------------------------------------------------------------


def _check_upstream(trigger: PipelineTrigger, upstream: Pipeline | None) -> None:
    if upstream is None:
        raise field_error("upstream_pipeline", "Name the pipeline whose success starts this one.")
    if upstream.project.organization_id != trigger.environment.organization_id:
        raise field_error("upstream_pipeline", "The pipeline belongs to another organization.")


def _check_secret(trigger: PipelineTrigger, secret: Secret | None) -> None:
    if secret is None:
        raise field_error("signing_secret", "A webhook trigger needs a signing secret.")
    if secret.organization_id != trigger.environment.organization_id:
        raise field_error("signing_secret", "No such secret in this organization.")


def _refuse_cycle(trigger: PipelineTrigger) -> None:
    """A trigger `upstream → pipeline` closes a cycle when the pipeline already starts, through the
    environment's other on-success triggers, its upstream; the error names the chain."""
    start, goal = trigger.pipeline_id, trigger.upstream_pipeline_id
    edges: dict[int, list[int]] = defaultdict(list)
    others = PipelineTrigger.objects.filter(environment_id=trigger.environment_id, kind=TriggerKind.ON_SUCCESS)
    for up, down in others.exclude(pk=trigger.pk).values_list("upstream_pipeline_id", "pipeline_id"):
        edges[up].append(down)
    came_from: dict[int, int | None] = {start: None}
    frontier = [start]
    while frontier and goal not in came_from:
        reached = []
        for node in frontier:
            for following in edges[node]:
                if following not in came_from:
                    came_from[following] = node
                    reached.append(following)
        frontier = reached
    if goal not in came_from:
        return
    path: list[int] = []
    step: int | None = goal
    while step is not None:
        path.append(step)
        step = came_from[step]
    path.reverse()  # start … goal; the new trigger closes goal → start
    names = dict(Pipeline.objects.filter(pk__in=path).values_list("pk", "name"))
    chain = " → ".join(names[pk] for pk in [*path, start])
    raise field_error("upstream_pipeline", f"This trigger would close a cycle: {chain}.")


def _switch(trigger: PipelineTrigger, enabled: bool | None) -> None:
    """Like schedules, a trigger in production or a protected stage is off until a deployment there
    switches it on; elsewhere it is on unless asked otherwise."""
    deployment = active_deployment(trigger.pipeline, trigger.environment)
    only_deployed = runs_only_deployed(trigger.environment)
    if enabled is None:
        if trigger.pk is not None:
            return
        enabled = not only_deployed or deployment is not None
    if enabled and only_deployed and deployment is None:
        raise field_error(
            "enabled",
            f"No version of '{trigger.pipeline.slug}' is deployed in '{trigger.environment.slug}': "
            "its triggers switch on when one is.",
        )
    if enabled != trigger.enabled or trigger.pk is None:
        trigger.enabled = enabled
        trigger.switched_on_by = deployment if enabled else None


@transaction.atomic
def trigger_create(
    *,
    actor: User,
    pipeline: Pipeline,
    environment: Environment,
    kind: str,
    upstream_pipeline: Pipeline | None = None,
    signing_secret: Secret | None = None,
    enabled: bool | None = None,
) -> PipelineTrigger:
    """Create a trigger (who may: as for schedules, see require_schedule_edit)."""
    require_schedule_edit(actor, environment)
    require_own_environment(pipeline, environment)
    if kind not in TriggerKind.values:
        raise field_error("kind", f"One of {', '.join(TriggerKind.values)}.")
    trigger = PipelineTrigger(pipeline=pipeline, environment=environment, kind=kind, owner=actor)
    if kind == TriggerKind.ON_SUCCESS:
        if signing_secret is not None:
            raise field_error("signing_secret", "Only a webhook trigger has a signing secret.")
        _check_upstream(trigger, upstream_pipeline)
        trigger.upstream_pipeline = upstream_pipeline
    else:
        if upstream_pipeline is not None:
            raise field_error("upstream_pipeline", "A webhook trigger has no upstream pipeline.")
        _check_secret(trigger, signing_secret)
        trigger.signing_secret, trigger.token = signing_secret, secrets.token_urlsafe(32)
    _switch(trigger, enabled)
    return _save(trigger, actor=actor, reason="trigger created")


def trigger_update(
    *,
    actor: User,
    trigger: PipelineTrigger,
    enabled: bool | None = None,
    upstream_pipeline: Pipeline | None = None,
    signing_secret: Secret | None = None,
) -> PipelineTrigger:
    """Switch a trigger on or off, or change what it follows (its upstream pipeline, its secret)."""
    require_schedule_edit(actor, trigger.environment)
    with transaction.atomic():
        if upstream_pipeline is not None:
            if trigger.kind != TriggerKind.ON_SUCCESS:
                raise field_error("upstream_pipeline", "A webhook trigger has no upstream pipeline.")
            _check_upstream(trigger, upstream_pipeline)
            trigger.upstream_pipeline = upstream_pipeline
        if signing_secret is not None:
            if trigger.kind != TriggerKind.WEBHOOK:
                raise field_error("signing_secret", "Only a webhook trigger has a signing secret.")
            _check_secret(trigger, signing_secret)
            trigger.signing_secret = signing_secret
        _switch(trigger, enabled)
        return _save(trigger, actor=actor, reason="trigger changed")


def _save(trigger: PipelineTrigger, *, actor: User, reason: str) -> PipelineTrigger:
    # Serialize edits of one environment's triggers: two concurrent edits cannot each miss the
    # other's half of a cycle.
    Environment.objects.select_for_update().filter(pk=trigger.environment_id).values_list("pk").first()
    if trigger.kind == TriggerKind.ON_SUCCESS:
        _refuse_cycle(trigger)
    validate(trigger)
    audited_save(trigger, actor=actor, reason=reason, clean=False)
    return trigger


@transaction.atomic
def trigger_delete(*, actor: User, trigger: PipelineTrigger) -> None:
    """Delete a trigger (same rule as editing it); the runs it started keep their upstream run."""
    require_schedule_edit(actor, trigger.environment)
    audited_delete(trigger, actor=actor, reason="trigger deleted")


# --- firing on success --------------------------------------------------------------------------


def triggers_fire_on_success(run: Run) -> None:
    """Called in the transaction that records `run` succeeded: one pending fire per enabled
    on-success trigger of its pipeline in its environment, the worker woken once it commits."""
    triggers = PipelineTrigger.objects.filter(
        kind=TriggerKind.ON_SUCCESS,
        upstream_pipeline_id=run.pipeline_id,
        environment_id=run.environment_id,
        enabled=True,
    ).values_list("pk", flat=True)
    fires = [TriggerFire(trigger_id=pk, upstream=run) for pk in triggers]
    if not fires:
        return
    TriggerFire.objects.bulk_create(fires, ignore_conflicts=True)  # a second completion adds nothing
    transaction.on_commit(lambda: enqueue(START_TASK, [run.pk]), robust=True)


def trigger_fires_start(*, upstream_pk: int | None = None) -> list[int]:
    """Start the run of every pending fire (of one upstream run, or all: the beat sweep). Each fire is
    taken under a row lock and done once; returns the runs created."""
    pending = TriggerFire.objects.filter(fired_at__isnull=True)
    if upstream_pk is not None:
        pending = pending.filter(upstream_id=upstream_pk)
    created = []
    for pk in list(pending.order_by("pk").values_list("pk", flat=True)[:SWEEP_BATCH]):
        run = _start(pk)
        if run is not None:
            created.append(run.pk)
    return created


def _start(fire_pk: int) -> Run | None:
    with transaction.atomic():
        unfired = TriggerFire.objects.filter(pk=fire_pk, fired_at__isnull=True)
        fire = first_unlocked(
            unfired.select_related("trigger__pipeline__project", "trigger__environment", "trigger__owner", "upstream")
        )
        if fire is None:  # another worker holds it, or started it already
            return None
        trigger, fire.fired_at = fire.trigger, timezone.now()
        try:
            if not trigger.enabled:
                raise Conflict("The trigger was switched off before it fired.")
            if trigger.owner is None:
                raise Conflict("The trigger's owner was deleted: nobody to run it as.")
            with transaction.atomic():
                fire.run = run_create(
                    actor=trigger.owner,
                    pipeline=trigger.pipeline,
                    environment=trigger.environment,
                    trigger=Trigger.TRIGGER,
                    upstream=fire.upstream,
                )
        except DomainError as exc:
            logger.warning("trigger %s could not start a run: %s", trigger.pk, exc.message)
            fire.error = exc.message[:1000]
        fire.save(update_fields=["run", "error", "fired_at"])
        return fire.run


# --- inbound webhooks ---------------------------------------------------------------------------


def _webhook_parameters(body: bytes) -> dict | None:
    if not body.strip():
        return None
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise field_error("body", "Send a JSON object (or nothing).") from None
    if not isinstance(payload, dict):
        raise field_error("body", "Send a JSON object (or nothing).")
    refuse_unknown(payload, {"parameters"}, "Unknown field: the body takes only 'parameters'.")
    parameters = payload.get("parameters")
    if parameters is not None and not isinstance(parameters, dict):
        raise field_error("parameters", "Give an object of variable names to values.")
    return parameters


def trigger_webhook_receive(*, token: str, headers, body: bytes) -> Run:
    """Verify a signed delivery to a webhook trigger and start its run, with the body's parameters
    (validated as any run's). A bad, stale or replayed signature is refused (401) with nothing written."""
    trigger = (
        PipelineTrigger.objects.select_related("pipeline__project", "environment", "owner", "signing_secret")
        .filter(token=token, kind=TriggerKind.WEBHOOK)
        .first()
        if isinstance(token, str) and token
        else None
    )
    if trigger is None or trigger.signing_secret is None:
        raise WebhookRefused("No such webhook trigger.")
    timestamp, signature = headers.get(signing.TIMESTAMP_HEADER), headers.get(signing.SIGNATURE_HEADER)
    if timestamp is None or signature is None:
        raise WebhookRefused(f"Sign the delivery ({signing.TIMESTAMP_HEADER} and {signing.SIGNATURE_HEADER}).")
    try:
        key = secret_services.materialize_for_platform(secret=trigger.signing_secret, purpose="trigger signing secret")
    except ValidationFailed:
        raise WebhookRefused("The trigger's signing secret cannot be read.") from None
    if signing.fresh_timestamp(timestamp) is None:
        raise WebhookRefused("The timestamp is missing, malformed or outside the replay window.")
    if not signing.verify(key, timestamp, body, signature):
        raise WebhookRefused("The signature does not match.")
    parameters = _webhook_parameters(body)
    if not trigger.enabled:
        raise Conflict(f"The trigger is off in '{trigger.environment.slug}'.")
    if trigger.owner is None:
        raise Conflict("The trigger's owner was deleted: nobody to run it as.")
    delivery = signing.sign(key, int(timestamp), body).removeprefix("sha256=")
    with transaction.atomic():
        fire = TriggerFire(trigger=trigger, delivery=delivery, fired_at=timezone.now())
        if not signing.accept_once(fire.save):
            raise WebhookRefused("This delivery was received already (a replay).")
        fire.run = run_create(
            actor=trigger.owner,
            pipeline=trigger.pipeline,
            environment=trigger.environment,
            parameters=parameters,
            trigger=Trigger.WEBHOOK,
        )
        fire.save(update_fields=["run"])
    return fire.run


def trigger_hook_url(trigger: PipelineTrigger) -> str | None:
    """The path a webhook trigger takes deliveries at (None for on-success triggers)."""
    from django.urls import reverse

    return reverse("trigger-hook", kwargs={"token": trigger.token}) if trigger.token else None
