"""Permission-filtered reads for runs, deployments and schedules (only in environments the user may see)."""

from django.db.models import Q, QuerySet

from apps.environments import permissions as perms
from apps.environments.models import Environment

from .models import Deployment, Run, Schedule


def _environments(user, codenames) -> Q:
    """Rows whose environment grants the user any of `codenames`."""
    condition = Q(pk__in=[])
    for codename in codenames:
        condition |= Q(environment__in=perms.environments_where(user, codename, Environment.objects.all()))
    return condition


def runs_for(user, codenames=(perms.VIEW,)) -> QuerySet[Run]:
    """Runs in environments where the user holds one of `codenames` (default: view_environment).
    Actions on a run (cancel, claim, report) also pass run_in_environment, so a `run`-scoped key,
    which cannot view, still reaches the runs it may act on."""
    if not user.is_authenticated:
        return Run.objects.none()
    return Run.objects.filter(_environments(user, codenames)).select_related(
        "pipeline__project", "environment", "version", "requested_by"
    )


def deployments_for(user) -> QuerySet[Deployment]:
    if not user.is_authenticated:
        return Deployment.objects.none()
    return Deployment.objects.filter(_environments(user, (perms.VIEW,))).select_related(
        "pipeline__project", "environment", "version", "deployed_by", "previous__version"
    )


def schedules_for(user) -> QuerySet[Schedule]:
    if not user.is_authenticated:
        return Schedule.objects.none()
    return Schedule.objects.filter(_environments(user, (perms.VIEW,))).select_related(
        "pipeline__project", "environment__policy", "owner"
    )
