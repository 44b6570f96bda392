"""What every promotion service shares: the state-machine transition helper, the locked read of a
request, notifications about a request, and the Celery wake-up (the row is the outbox; a lost
wake-up is found by the sweep)."""

import logging

from django_fsm import TransitionNotAllowed

from apps.core.errors import Conflict
from apps.environments.services import environment_emit

from ..models import PromotionRequest, PromotionState

logger = logging.getLogger("planasonix.approvals")

S = PromotionState
MAX_TEXT = 4000  # reason and comment columns


def _invalid_state(request: PromotionRequest, name: str) -> Conflict:
    verb = name.replace("_", " ")
    return Conflict(f"Cannot {verb} promotion request #{request.pk}: it is {request.state}.", code="invalid_state")


def transition(request: PromotionRequest, name: str, **kwargs) -> None:
    """Apply one of PromotionRequest's declared transitions (the caller holds the row lock and saves);
    a transition the current state does not allow is the domain's 409 naming that state."""
    try:
        getattr(request, name)(**kwargs)
    except TransitionNotAllowed:
        raise _invalid_state(request, name) from None


_UNREAD = object()  # "the caller has not read the active deployment" (None means there is none)


def _payload(request: PromotionRequest, **extra) -> dict:
    return {
        "promotion": request.pk,
        "pipeline": request.pipeline.slug,
        "version": request.version.number,
        "source": request.source.slug,
        "target": request.target.slug,
        "state": request.state,
        "requested_by": request.requested_by.get_username() if request.requested_by else None,
        **extra,
    }


def _emit(request: PromotionRequest, event: str, *, users=(), **extra) -> None:
    """Notify the target environment's channels, and these users in their inboxes and by email (an
    email delivery each, through the outbox), once the transaction commits."""
    title = f"{event}: {request.pipeline.slug} v{request.version.number} → {request.target.slug}"
    payload = {"title": title, **_payload(request, **extra)}
    environment_emit(request.target, event, payload, users=list(users), email_users=True)


def _enqueue(task, args, countdown: float | None = None) -> None:
    try:
        task.apply_async(args=args, countdown=countdown)
    except Exception:  # broker down: the row is the truth and the beat sweep finds it
        logger.warning("could not enqueue %s; the sweep will pick the work up", task.name)


def _locked(request: PromotionRequest) -> PromotionRequest:
    return (
        PromotionRequest.objects.select_for_update(of=("self",))
        .select_related(
            "pipeline__project", "version", "source", "target__policy", "target__organization", "requested_by"
        )
        .get(pk=request.pk)
    )
