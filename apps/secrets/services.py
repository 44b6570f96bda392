"""Secrets: create, rotate, delete, and materialize (only inside an executor, only where allowed)."""

from django.db import transaction
from django.utils import timezone

from apps.core import crypto
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed, field_error
from apps.core.services import audited_delete, audited_save
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.tenancy import revisions
from apps.tenancy.permissions import require_org_admin

from . import masking, providers
from .models import Secret

MAX_VALUE_LENGTH = 64 * 1024


def _require_admin(actor: User, organization) -> None:
    require_org_admin(actor, organization, "manage secrets")


def _check_environments(organization, environments) -> list[Environment]:
    environments = list(environments)
    foreign = [e for e in environments if e.organization_id != organization.pk]
    if foreign:
        raise field_error("allowed_environments", f"Environment '{foreign[0].slug}' belongs to another organization.")
    return environments


def _set_value(secret: Secret, value: str | None) -> None:
    if not isinstance(value, str) or not value:
        raise field_error("value", "Give the secret's value.")
    if len(value) > MAX_VALUE_LENGTH:
        raise field_error("value", f"At most {MAX_VALUE_LENGTH} characters.")
    if "\x00" in value:
        raise field_error("value", "NUL characters are not allowed.")
    secret.ciphertext = crypto.encrypt(value)
    secret.fingerprint = crypto.fingerprint(value)


@transaction.atomic
def secret_create(
    *,
    actor: User,
    organization,
    name: str,
    provider: str = "local",
    value: str | None = None,
    reference: str = "",
    allowed_environments=(),
    description: str = "",
) -> Secret:
    """Create a credential reference. `value` (local provider) is encrypted and never returned."""
    _require_admin(actor, organization)
    backend = providers.get(provider)
    if Secret.objects.filter(organization=organization, name=name).exists():
        raise Conflict(f"A secret named '{name}' exists.", fields={"name": ["Already exists."]})
    secret = Secret(
        organization=organization,
        name=name,
        provider=provider,
        reference=reference or "",
        description=description,
        created_by=actor,
    )
    backend.validate(secret)
    if backend.stores_value:
        _set_value(secret, value)
    elif value:
        raise field_error("value", f"The '{provider}' provider keeps no value here; give a reference instead.")
    else:
        secret.fingerprint = crypto.fingerprint(f"{provider}:{secret.reference}")
    environments = _check_environments(organization, allowed_environments)
    audited_save(secret, actor=actor, reason="secret created")
    secret.allowed_environments.set(environments)
    revisions.bump(organization.pk)
    return secret


@transaction.atomic
def secret_update(
    *,
    actor: User,
    secret: Secret,
    value: str | None = None,
    reference: str | None = None,
    allowed_environments=None,
    description: str | None = None,
) -> Secret:
    """Rotate the value, change the reference, the allowed environments or the description."""
    secret = Secret.objects.select_for_update().select_related("organization").get(pk=secret.pk)
    _require_admin(actor, secret.organization)
    backend = providers.get(secret.provider)
    reasons = []
    if description is not None and description != secret.description:
        secret.description = description
        reasons.append("description")
    if reference is not None and reference != secret.reference:
        secret.reference = reference
        backend.validate(secret)
        if not backend.stores_value:
            secret.fingerprint = crypto.fingerprint(f"{secret.provider}:{reference}")
            secret.rotated_at = timezone.now()
        reasons.append("reference")
    if value is not None:
        if not backend.stores_value:
            raise field_error("value", f"The '{secret.provider}' provider keeps no value here.")
        _set_value(secret, value)
        secret.rotated_at = timezone.now()
        reasons.append("value rotated")
    if reasons:
        audited_save(secret, actor=actor, reason="changed: " + ", ".join(reasons))
    if allowed_environments is not None:
        environments = _check_environments(secret.organization, allowed_environments)
        # The history row the m2m change writes must name the actor too (no middleware in tasks or the CLI).
        if getattr(actor, "is_authenticated", False):
            secret._history_user = actor  # type: ignore[attr-defined]  # read by simple-history
        secret._change_reason = "changed: " + ", ".join([*reasons, "allowed environments"])  # type: ignore[attr-defined]
        secret.allowed_environments.set(environments)
    revisions.bump(secret.organization_id)
    return secret


@transaction.atomic
def secret_delete(*, actor: User, secret: Secret) -> None:
    """Delete a secret that nothing references any more."""
    _require_admin(actor, secret.organization)
    from django.db.models.deletion import ProtectedError

    try:
        with transaction.atomic():
            audited_delete(secret, actor=actor, reason="secret deleted")
    except ProtectedError as exc:
        users = sorted({str(o) for o in exc.protected_objects})[:5]
        raise Conflict(f"Secret '{secret.name}' is still referenced by: {', '.join(users)}.") from exc
    revisions.bump(secret.organization_id)


def secret_allowed_in(secret: Secret, environment: Environment) -> bool:
    return any(e.pk == environment.pk for e in secret.allowed_environments.all())


def materialize(*, actor: User, secret: Secret, environment: Environment, executor: bool) -> str:
    """The secret's value, for an executor running in `environment` on behalf of `actor`.

    Refused unless the caller is an executor, holds use_environment_credentials there, and the
    secret allows that environment. The value must never be stored, logged or returned to a user."""
    if not executor:
        raise PermissionDenied("Secrets are materialized only inside executors.")
    perms.require(actor, perms.USE_CREDENTIALS, environment)
    if not secret_allowed_in(secret, environment):
        raise PermissionDenied(f"Secret '{secret.name}' is not allowed in environment '{environment.slug}'.")
    try:
        value = providers.get(secret.provider).materialize(secret)
    except providers.SecretUnavailable as exc:
        raise ValidationFailed(str(exc), code="secret_unavailable") from exc
    masking.record(secret.name, value)
    return value


def materialize_for_platform(*, secret: Secret, purpose: str) -> str:
    """The value of a credential the platform itself uses on the worker (`purpose`: e.g. a Git fetch),
    not an executor's in an environment: the configuring admin chose the secret, so no environment
    grant applies. Never stored, logged or returned to a user; recorded for masking."""
    try:
        value = providers.get(secret.provider).materialize(secret)
    except providers.SecretUnavailable as exc:
        raise ValidationFailed(f"{purpose}: {exc}", code="secret_unavailable") from exc
    masking.record(secret.name, value)
    return value


def masker_for(organization_id: int, names) -> masking.SecretMasker:
    """A masker holding the named secrets' current values, for output that an engine outside this
    process produced after it was handed them (an external executor's report). The values serve
    only to mask; a secret that cannot be read now is skipped (it cannot have been handed out)."""
    masker = masking.SecretMasker()
    for secret in Secret.objects.filter(organization_id=organization_id, name__in=set(names)):
        try:
            masker.add(providers.get(secret.provider).materialize(secret), secret.name)
        except (providers.SecretUnavailable, ValidationFailed):
            continue
    return masker


def rotate_encryption_keys() -> dict[str, int]:
    """Re-encrypt every locally stored secret value under the newest key (no history rows: the
    values and fingerprints do not change)."""
    counts = {"secrets": 0, "channels": 0}
    from apps.notifications.models import Channel

    with transaction.atomic():
        for secret in Secret.objects.select_for_update().exclude(ciphertext=""):
            Secret.objects.filter(pk=secret.pk).update(ciphertext=crypto.rotate(secret.ciphertext))
            counts["secrets"] += 1
        for channel in Channel.objects.select_for_update().exclude(secret_ciphertext=""):
            Channel.objects.filter(pk=channel.pk).update(secret_ciphertext=crypto.rotate(channel.secret_ciphertext))
            counts["channels"] += 1
    return counts
