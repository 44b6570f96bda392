"""Tasks that need resolution (test connection)."""

from celery import shared_task

from . import connection_tests


@shared_task(
    name="apps.resolution.tasks.test_connection", acks_late=True, reject_on_worker_lost=True, ignore_result=True
)
def test_connection(test_pk: int) -> None:
    """Run one queued connection test; safe to run twice (a finished test is left alone)."""
    connection_tests.run(test_pk)


@shared_task(name="apps.resolution.tasks.sweep_connection_tests", ignore_result=True)
def sweep_connection_tests() -> int:
    """Beat: re-send connection tests a broker outage left queued."""
    return connection_tests.sweep()
