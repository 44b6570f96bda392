"""Permission-filtered reads for runs, deployments, schedules and triggers (only in environments the user may see)."""

from django.db.models import QuerySet

from apps.environments import permissions as perms

from .models import Deployment, PipelineTrigger, Run, Schedule


def runs_for(user, codenames=(perms.VIEW,)) -> QuerySet[Run]:
    """Runs in environments where the user holds one of `codenames` (default: view_environment).
    Actions on a run (cancel, claim, report) also pass run_in_environment, so a `run`-scoped key,
    which cannot view, still reaches the runs it may act on."""
    return Run.objects.restrict(user, tuple(codenames)).select_related(
        "pipeline__project", "environment", "version", "requested_by"
    )


def deployments_for(user) -> QuerySet[Deployment]:
    return Deployment.objects.restrict(user).select_related(
        "pipeline__project", "environment", "version", "deployed_by", "previous__version"
    )


def schedules_for(user) -> QuerySet[Schedule]:
    return Schedule.objects.restrict(user).select_related("pipeline__project", "environment__policy", "owner")


def triggers_for(user) -> QuerySet[PipelineTrigger]:
    return PipelineTrigger.objects.restrict(user).select_related(
        "pipeline__project", "environment__policy", "upstream_pipeline", "signing_secret", "owner"
    )
