"""Deployments: the active deployment of a pipeline in an environment, deploying (directly, or for a
promotion; it switches the environment's schedules and triggers on), the deployment's actions, and
rolling back to the previous version (which switches off the triggers the rolled-back deployment had
switched on; apps above react through `rollback_hooks`; `direct_deploy_guards` lets them refuse a
direct deploy)."""

from django.db import IntegrityError, transaction
from django.utils import timezone
from simple_history.utils import bulk_update_with_history

from apps.core.actions import ALLOWED, Answer, refused
from apps.core.errors import Conflict, PermissionDenied, field_error
from apps.core.services import audited_save
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.environments.services import active_freeze
from apps.pipelines.models import Pipeline, PipelineVersion
from apps.resolution import engine

from ..models import Deployment, PipelineTrigger, Run, Schedule

# Hooks for apps above this one (approvals): callables (pipeline, environment) -> str | None; a
# non-empty answer means "deploying this pipeline here needs a promotion" and is the reason shown.
direct_deploy_guards: list = []
# Callables (*, actor, deployment, runs, note, reason) called inside a rollback's transaction, after
# the previous version was redeployed: approvals marks the deployment's promotion rolled back.
rollback_hooks: list = []


# --- deployments ------------------------------------------------------------------------------


def active_deployment(pipeline, environment) -> Deployment | None:
    return (
        Deployment.objects.filter(pipeline=pipeline, environment=environment, is_active=True)
        .select_related("version")
        .first()
    )


def deployed_configuration(deployment: Deployment) -> dict:
    """The configuration `deployment` ran with, as stored on it at deploy time. A deployment made
    before it was stored gets it rebuilt from history once, and kept (later reads are reads)."""
    if deployment.resolved_document_id is None:
        answer = engine.resolve(
            deployment.pipeline, deployment.environment, version=deployment.version, as_of=deployment.created_at
        )
        deployment.resolved = engine.config_view(answer)
        Deployment.resolved.flush(deployment)
        # Bookkeeping of a derived column (no history row): only where no one stored it meanwhile.
        Deployment.objects.filter(pk=deployment.pk, resolved_document__isnull=True).update(
            resolved_document=deployment.resolved_document_id
        )
    return deployment.resolved


def require_own_environment(pipeline: Pipeline, environment: Environment) -> None:
    """Refuse (400 on `environment`) an environment of another organization than the pipeline's."""
    if environment.organization_id != pipeline.project.organization_id:
        raise field_error("environment", "The environment belongs to another organization.")


def deploy(
    *,
    actor: User | None,  # None: the platform's automatic rollback, or a promotion whose requester was deleted
    pipeline: Pipeline,
    environment: Environment,
    version: PipelineVersion,
    promotion_request_id: int | None = None,
    note: str = "",
    resolved: dict | None = None,
    resolved_document: str | None = None,
) -> Deployment:
    """Make `version` the active deployment of the pipeline in the environment (caller checks who
    may). Deactivates the previous one, links it, and switches the environment's schedules and
    triggers on.
    Keeps the configuration it deploys with (`resolved`, a redacted config view; resolved here when
    the caller has none; `resolved_document`: the digest under which the caller has stored it)."""
    if version.pipeline_id != pipeline.pk:
        raise field_error("version", "The version belongs to another pipeline.")
    require_own_environment(pipeline, environment)
    # No savepoint of its own: a caller's transaction (a promotion's deploying step) rolls back whole.
    with transaction.atomic(savepoint=False):
        previous = (
            Deployment.objects.select_for_update()
            .filter(pipeline=pipeline, environment=environment, is_active=True)
            .first()
        )
        if previous is not None:
            previous.is_active = False
            previous.deactivated_at = timezone.now()
            audited_save(previous, actor=actor, reason="superseded", clean=False)
        deployment = Deployment(
            pipeline=pipeline,
            environment=environment,
            version=version,
            deployed_by=actor,
            previous=previous,
            promotion_request_id=promotion_request_id,
            note=note,
        )
        if resolved_document:
            Deployment.resolved.adopt(deployment, resolved_document, resolved)
        else:
            deployment.resolved = (
                resolved
                if resolved is not None
                else engine.config_view(engine.resolve(pipeline, environment, version=version))
            )
        try:
            with transaction.atomic():
                audited_save(deployment, actor=actor, reason=note or "deployed", clean=False)
        except IntegrityError as exc:
            raise Conflict("Another deployment of this pipeline into this environment is in progress.") from exc
        for schedule in Schedule.objects.filter(pipeline=pipeline, environment=environment, enabled=False):
            schedule.enabled = True
            audited_save(schedule, actor=actor, reason=f"switched on by deploying v{version.number}", clean=False)
        _switch_triggers(
            PipelineTrigger.objects.filter(pipeline=pipeline, environment=environment, enabled=False),
            on_by=deployment,
            actor=actor,
            reason=f"switched on by deploying v{version.number}",
        )
    return deployment


def _switch_triggers(triggers, *, on_by: Deployment | None, actor: User | None, reason: str) -> None:
    """Switch triggers on (by the deployment `on_by`) or off (None): one statement to find them, and
    only when there are some, one bulk update and one bulk insert of their history rows."""
    rows = list(triggers)
    if not rows:
        return
    now = timezone.now()
    for trigger in rows:
        trigger.enabled, trigger.switched_on_by, trigger.updated_at = on_by is not None, on_by, now
    bulk_update_with_history(
        rows,
        PipelineTrigger,
        ["enabled", "switched_on_by", "updated_at"],
        default_user=actor if getattr(actor, "is_authenticated", False) else None,
        default_change_reason=reason,
    )


DEPLOYMENT_ACTIONS = ("rollback",)


def deployment_actions(user, deployment: Deployment) -> dict[str, Answer]:
    """For each of DEPLOYMENT_ACTIONS: allowed, or why not. Rolling back needs manage_environment
    (`user=None` is the platform's automatic rollback), an active deployment and one before it."""
    environment = deployment.environment
    if user is not None and not perms.may(user, perms.MANAGE, environment):
        message = f"You lack the '{perms.MANAGE}' permission on environment '{environment.slug}'."
        rollback = refused(
            PermissionDenied(message, code="permission_denied"), f"you lack {perms.MANAGE} on '{environment.slug}'"
        )
    elif not deployment.is_active:
        rollback = refused(Conflict("Only the active deployment can be rolled back.", code="not_active"))
    elif deployment.previous_id is None:
        rollback = refused(Conflict("There is no earlier deployment to roll back to.", code="nothing_to_roll_back_to"))
    else:
        rollback = ALLOWED
    return {"rollback": rollback}


def deploy_direct(*, actor: User, pipeline: Pipeline, environment: Environment, version: PipelineVersion) -> Deployment:
    """Deploy without a promotion: only where no approval rule applies and the stage is not protected
    (config editors; manage_environment too while the environment is locked)."""
    perms.require_config_edit(actor, environment)
    if environment.is_protected:
        raise PermissionDenied(f"'{environment.slug}' is protected: deploy to it through a promotion request.")
    window = active_freeze(environment)
    if window is not None:
        raise Conflict(f"'{environment.slug}' is in a freeze window ({window.reason}); deployments are blocked.")
    for guard in direct_deploy_guards:
        reason = guard(pipeline, environment)
        if reason:
            raise PermissionDenied(reason)
    return deploy(actor=actor, pipeline=pipeline, environment=environment, version=version, note="direct deploy")


# --- rollback ---------------------------------------------------------------------------------


def deployment_rollback(
    *, actor: User | None, deployment: Deployment, reason: str = ""
) -> tuple[Deployment, list[Run]]:
    """Redeploy the version before `deployment` as a new deployment (history is never rewritten) and
    list the runs the rolled-back version wrote. `actor=None` is the platform's automatic rollback."""
    with transaction.atomic():
        deployment = (
            Deployment.objects.select_for_update(of=("self",))
            .select_related("environment__organization", "pipeline__project", "version", "previous__version")
            .get(pk=deployment.pk)
        )
        if actor is not None:
            perms.require(actor, perms.VIEW, deployment.environment)
        deployment_actions(actor, deployment)["rollback"].enforce()
        previous = deployment.previous
        assert previous is not None  # the rollback action refuses (above) a deployment with none before it
        target_version = previous.version
        note = f"rollback of v{deployment.version.number} to v{target_version.number}"
        new = deploy(
            actor=actor,
            pipeline=deployment.pipeline,
            environment=deployment.environment,
            version=target_version,
            note=(f"{note}: {reason}" if reason else note)[:500],  # Deployment.note holds 500
        )
        # Triggers follow the running version: those the rolled-back deployment switched on go off.
        _switch_triggers(
            PipelineTrigger.objects.filter(switched_on_by=deployment, enabled=True),
            on_by=None,
            actor=actor,
            reason=note,
        )
        runs = list(
            Run.objects.filter(deployment=deployment).select_related("environment", "version").order_by("created_at")
        )
        for hook in rollback_hooks:
            hook(actor=actor, deployment=deployment, runs=runs, note=note, reason=reason)
    return new, runs


def runs_written_by(deployment: Deployment) -> list[Run]:
    """Runs (and so destination tables) written by a deployment's version while it was active."""
    return list(Run.objects.filter(deployment=deployment).order_by("created_at"))
