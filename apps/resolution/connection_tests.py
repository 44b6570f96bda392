"""Running a "test connection": resolve the binding's params for its environment, materialize its
credential (only for a requester holding use_environment_credentials), and connect for real."""

from django.db import transaction
from django.utils import timezone

from apps.connections import connectors
from apps.connections.models import ConnectionTest
from apps.connections.schemas import validate_params
from apps.core.errors import DomainError
from apps.core.services import first_unlocked
from apps.environments import permissions as perms
from apps.secrets import services as secret_services
from apps.secrets.masking import SecretMasker

from .engine import resolve
from .interpolation import Interpolator


def run(test_pk: int) -> ConnectionTest | None:
    with transaction.atomic():
        queued = ConnectionTest.objects.filter(pk=test_pk, status=ConnectionTest.Status.QUEUED)
        test = first_unlocked(
            queued.select_related("binding__role", "binding__environment", "binding__credential", "requested_by")
        )
        if test is None:
            return None
        with SecretMasker() as masker:  # the stored message leaves through the masker of the credential
            ok, message = _check(test)
        test.status = ConnectionTest.Status.OK if ok else ConnectionTest.Status.FAILED
        test.message = masker.mask_text(message)[:500]
        test.finished_at = timezone.now()
        test.save(update_fields=["status", "message", "finished_at"])
    return test


def _check(test: ConnectionTest) -> tuple[bool, str]:
    binding = test.binding
    environment = binding.environment
    actor = test.requested_by
    answer = resolve(None, environment, project=binding.role.project, use_cache=True)
    variables = answer["variables"]

    def lookup(name):
        entry = variables.get(name)
        if entry is None:
            return False, None, False
        return True, entry["value"], entry["type"] == "secret"

    interpolator = Interpolator(lookup)
    try:
        params = interpolator.expand_value(binding.params, [binding.role.name])
        validate_params(binding.role.kind, params, resolved=True)
    except Exception as exc:
        return False, f"Parameters do not resolve: {exc}"
    password = None
    if binding.credential is not None:
        allowed = (
            test.may_use_credentials and actor is not None and perms.may(actor, perms.USE_CREDENTIALS, environment)
        )
        if not allowed or actor is None:
            return False, "The credential was not used: the requester lacks use_environment_credentials here."
        try:
            password = secret_services.materialize(
                actor=actor, secret=binding.credential, environment=environment, executor=True
            )
        except DomainError as exc:
            return False, exc.message
    return connectors.check(binding.role.kind, params, password, environment=environment)


def sweep(grace_seconds: int = 120) -> int:
    """Re-send tests still queued after `grace_seconds` (the broker was down when they were asked for)."""
    from datetime import timedelta

    from apps.connections.services import enqueue_connection_test

    cutoff = timezone.now() - timedelta(seconds=grace_seconds)
    pending = list(
        ConnectionTest.objects.filter(status=ConnectionTest.Status.QUEUED, created_at__lt=cutoff).values_list(
            "pk", flat=True
        )[:200]
    )
    for pk in pending:
        enqueue_connection_test(pk)
    return len(pending)
