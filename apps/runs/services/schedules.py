"""Schedules: saving and deleting them (who may edit), their due ticks (croniter, the schedule's
time zone), and firing due ticks exactly once each."""

import logging
import zoneinfo
from datetime import datetime, timedelta

from croniter import croniter
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from apps.core.services import audited_delete, audited_save, validate
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.pipelines.models import Pipeline

from ..models import Schedule, ScheduleFire, Trigger
from .deployments import active_deployment, require_own_environment
from .runs import run_create

logger = logging.getLogger("planasonix.runs")


# --- schedules --------------------------------------------------------------------------------


def schedule_save(
    *,
    actor: User,
    pipeline: Pipeline,
    environment: Environment,
    cron: str,
    timezone_name: str = "UTC",
    enabled: bool | None = None,
    schedule: Schedule | None = None,
) -> Schedule:
    """Create or change a schedule (see require_schedule_edit)."""
    require_schedule_edit(actor, environment)
    require_own_environment(pipeline, environment)
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


def require_schedule_edit(actor: User, environment: Environment) -> None:
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
def schedule_delete(*, actor: User, schedule: Schedule) -> None:
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
        owner = schedule.owner
        if owner is None:  # the owner's account was deleted (SET_NULL): nobody to run it as
            logger.warning("schedule %s: its owner was deleted; not fired", schedule.pk)
            continue
        try:
            with transaction.atomic():
                fire = ScheduleFire.objects.create(schedule=schedule, scheduled_for=tick)
                Schedule.objects.filter(pk=schedule.pk).update(last_fired_for=tick)
                run = run_create(
                    actor=owner,
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
