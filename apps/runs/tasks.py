"""Run tasks: thin and idempotent; the Run row is the source of truth."""

from celery import shared_task

from apps.core.log_context import log_context

from . import services


@shared_task(name="apps.runs.tasks.execute_run", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def execute_run(run_pk: int) -> None:
    """Execute one queued run (a second delivery finds it claimed and does nothing)."""
    with log_context(run_id=run_pk):
        services.run_execute(run_pk)


@shared_task(name="apps.runs.tasks.fire_schedules", ignore_result=True)
def fire_schedules() -> list[int]:
    """Beat: start the runs of due schedule ticks (exactly once per tick)."""
    return services.schedules_fire_due()


@shared_task(name="apps.runs.tasks.sweep_runs", ignore_result=True)
def sweep_runs() -> dict:
    """Beat: re-dispatch runs a broker outage or a dead worker left behind."""
    return services.runs_sweep()


@shared_task(
    name="apps.runs.tasks.start_triggered_runs", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def start_triggered_runs(upstream_run_pk: int) -> list[int]:
    """Start the downstream runs of a succeeded run's triggers (a second delivery starts none)."""
    with log_context(run_id=upstream_run_pk):
        return services.trigger_fires_start(upstream_pk=upstream_run_pk)


@shared_task(name="apps.runs.tasks.sweep_triggers", ignore_result=True)
def sweep_triggers() -> list[int]:
    """Beat: start the runs of trigger fires a broker outage or a dead worker left pending."""
    return services.trigger_fires_start()
