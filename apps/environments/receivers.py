"""Reactions to tenancy events (tenancy sends them; it does not know this app)."""

from django.dispatch import receiver

from apps.core import patterns
from apps.core.errors import ValidationFailed
from apps.core.types import User
from apps.tenancy import signals
from apps.tenancy.models import Edition

from . import services
from .models import Environment, Kind


@receiver(signals.organization_created)
def create_implicit_environment(sender, organization, actor: User, **kwargs):
    if organization.edition == Edition.STANDARD:
        services.create_implicit_environment(actor=actor, organization=organization)


@receiver(signals.organization_changing)
def refuse_changes_that_break_environments(sender, organization, changes, actor: User, **kwargs):
    environments = list(Environment.objects.filter(organization=organization))
    if changes.get("edition") == Edition.STANDARD and len(environments) > 1:
        raise ValidationFailed(
            f"Organization '{organization.slug}' has {len(environments)} environments; the standard edition has "
            "exactly one. Delete the others first.",
            fields={"edition": ["Too many environments for the standard edition."]},
        )
    if changes.get("edition") == Edition.STANDARD and not environments:
        services.create_implicit_environment(actor=actor, organization=organization)
    if "max_environments" in changes and changes["max_environments"] < len(environments):
        raise ValidationFailed(
            f"Organization '{organization.slug}' has {len(environments)} environments, more than the new limit "
            f"{changes['max_environments']}.",
            fields={"max_environments": ["Below the number of existing environments."]},
        )
    if "environment_name_pattern" in changes:
        misfits = [e.name for e in environments if not patterns.fullmatch(changes["environment_name_pattern"], e.name)]
        if misfits:
            raise ValidationFailed(
                f"Existing environment names do not match the new rule: {', '.join(misfits[:5])}.",
                fields={"environment_name_pattern": ["Existing environment names would break it."]},
            )


@receiver(signals.member_added)
def grant_development_rights(sender, membership, actor: User, **kwargs):
    for environment in Environment.objects.filter(organization=membership.organization, kind=Kind.DEVELOPMENT):
        services.grant_development_defaults(actor=actor, user=membership.user, environment=environment)


@receiver(signals.member_removed)
def revoke_environment_rights(sender, membership, actor: User, **kwargs):
    services.revoke_all_for_member(actor=actor, user=membership.user, organization=membership.organization)
