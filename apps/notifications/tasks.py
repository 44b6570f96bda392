"""Delivery tasks: thin wrappers over the services (the Delivery row is the source of truth)."""

from celery import shared_task

from . import services


@shared_task(name="apps.notifications.tasks.deliver", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def deliver(delivery_pk: int) -> None:
    """Send one delivery if it is due; safe to run twice (the service claims a lease first)."""
    services.delivery_attempt(delivery_pk)


@shared_task(name="apps.notifications.tasks.sweep_deliveries", ignore_result=True)
def sweep_deliveries() -> int:
    """Beat: re-send deliveries a broker outage or a dead worker left behind."""
    return services.deliveries_sweep()
