"""Permission-filtered reads for repositories and the Git provenance of versions."""

from django.db.models import QuerySet

from .models import Repository


def repositories_for(user, action: str | None = None) -> QuerySet[Repository]:
    return Repository.objects.restrict(user, action).select_related(
        "pipeline__project__organization", "credential", "webhook_secret", "sync"
    )


def repository_of(pipeline) -> Repository | None:
    """The pipeline's source repository with its last sync, or None."""
    return Repository.objects.select_related("sync").filter(pipeline=pipeline).first()
