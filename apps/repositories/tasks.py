"""Repository tasks: thin; the RepositorySync row is the outbox and the lock."""

from celery import shared_task

from apps.core.log_context import log_context

from . import services


@shared_task(
    name="apps.repositories.tasks.sync_repository",
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    soft_time_limit=900,
)
def sync_repository(repository_pk: int) -> None:
    """Fetch the remote and import new versions (a duplicate finds the sync locked, or nothing new)."""
    with log_context(repository_id=repository_pk):
        services.repository_sync(repository_pk)


@shared_task(name="apps.repositories.tasks.sync_repositories", ignore_result=True)
def sync_repositories() -> int:
    """Beat: sync every repository, covering webhooks that never arrived."""
    return services.repositories_sweep()
