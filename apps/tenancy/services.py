"""Writes for organizations, memberships, service accounts and API keys."""

import hashlib
import hmac
import re
import secrets
import string
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.text import slugify

from apps.core.errors import Conflict, PermissionDenied, ValidationFailed, field_error
from apps.core.scopes import SCOPES
from apps.core.services import audited_delete, audited_save, validate
from apps.core.types import User

from . import api_key_lookup, revisions, signals
from .models import ApiKey, Edition, Membership, Organization, Role, ServiceAccount
from .permissions import forget_org_roles, is_org_admin, is_org_member, is_platform_operator, may_manage_owners

# An organization's settings, as the API and the admin show and take them.
ORGANIZATION_FIELDS = [
    "name",
    "slug",
    "edition",
    "max_environments",
    "environment_name_pattern",
    "egress_allow",
    "egress_deny",
]
ORGANIZATION_ADMIN_FIELDS = {"name", "environment_name_pattern", "egress_allow", "egress_deny"}
# Edition and limits are commercial settings: only platform staff change them.
ORGANIZATION_STAFF_FIELDS = {"edition", "max_environments"}


def _require_org_admin(actor: User, organization) -> None:
    if not is_org_admin(actor, organization):
        raise PermissionDenied(f"You must be an owner or admin of organization '{organization.slug}'.")


def _is_staff(actor: User) -> bool:
    return is_platform_operator(actor)


def _require_staff(actor: User, what: str) -> None:
    if not _is_staff(actor):
        raise PermissionDenied(f"Only platform staff may {what}.")


@transaction.atomic
def organization_create(
    *,
    actor: User,
    name: str,
    slug: str = "",
    edition: str = Edition.ENTERPRISE,
    max_environments: int = 5,
    environment_name_pattern: str | None = None,
    egress_allow: list | None = None,
    egress_deny: list | None = None,
    owner=None,
) -> Organization:
    """Create an organization with its owner (the actor unless given); staff only."""
    _require_staff(actor, "create organizations")
    organization = Organization(
        name=name,
        slug=slug or slugify(name)[:60],
        edition=edition,
        max_environments=max_environments,
    )
    if environment_name_pattern is not None:
        organization.environment_name_pattern = environment_name_pattern
    organization.egress_allow, organization.egress_deny = egress_allow or [], egress_deny or []
    if not organization.slug:
        raise field_error("slug", "Could not derive a slug from the name; give one.")
    audited_save(organization, actor=actor, reason="organization created")
    owner = owner or actor
    membership = Membership(organization=organization, user=owner, role=Role.OWNER)
    audited_save(membership, actor=actor, reason="organization owner")
    forget_org_roles(owner)
    signals.organization_created.send(sender=Organization, organization=organization, actor=actor)
    signals.member_added.send(sender=Membership, membership=membership, actor=actor)
    return organization


@transaction.atomic
def organization_update(*, actor: User, organization: Organization, **changes) -> Organization:
    """Change an organization's settings. Other apps may refuse (e.g. a limit below current use)."""
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    unknown = set(changes) - ORGANIZATION_ADMIN_FIELDS - ORGANIZATION_STAFF_FIELDS
    if unknown:
        raise ValidationFailed(f"Unknown organization fields: {', '.join(sorted(unknown))}")
    for name in ("egress_allow", "egress_deny"):
        if name in changes and changes[name] is None:  # an emptied admin field: no entries
            changes[name] = []
    real = {k: v for k, v in changes.items() if getattr(organization, k) != v}
    if not real:
        # Nothing changes, but a caller who may not change anything is still told so.
        if not (is_org_admin(actor, organization) or (set(changes) & ORGANIZATION_STAFF_FIELDS and _is_staff(actor))):
            _require_org_admin(actor, organization)
        return organization
    if set(real) & ORGANIZATION_STAFF_FIELDS:
        _require_staff(actor, "change an organization's edition or environment limit")
    else:
        _require_org_admin(actor, organization)
    for field, value in real.items():
        setattr(organization, field, value)
    validate(organization)
    signals.organization_changing.send(sender=Organization, organization=organization, changes=real, actor=actor)
    audited_save(organization, actor=actor, reason="changed: " + ", ".join(sorted(real)), clean=False)
    if {"egress_allow", "egress_deny"} & set(real):
        revisions.bump(organization.pk)  # cached resolutions carry the egress verdict on bindings
    return organization


def _owner_count(organization) -> int:
    return Membership.objects.filter(organization=organization, role=Role.OWNER).count()


@transaction.atomic
def membership_add(*, actor: User, organization: Organization, user, role: str = Role.MEMBER) -> Membership:
    """Add a user to an organization. Members start with development-environment rights only."""
    _require_org_admin(actor, organization)
    if role == Role.OWNER and not may_manage_owners(actor, organization):
        raise PermissionDenied("Only an owner may add another owner.", fields={"role": ["Only an owner may grant it."]})
    if Membership.objects.filter(organization=organization, user=user).exists():
        raise Conflict(
            f"{user.username} is already a member of {organization.slug}.", fields={"user": ["Already a member."]}
        )
    membership = Membership(organization=organization, user=user, role=role)
    audited_save(membership, actor=actor, reason="member added")
    forget_org_roles(user)
    signals.member_added.send(sender=Membership, membership=membership, actor=actor)
    return membership


@transaction.atomic
def membership_change_role(*, actor: User, membership: Membership, role: str) -> Membership:
    """Change a member's role; only owners grant or take away the owner role; one owner always remains."""
    # FOR UPDATE over the select_related join also locks the organization row: that serializes role
    # changes and removals per organization, so two owners cannot demote each other at once (the
    # last-owner check would otherwise see two owners in both transactions).
    membership = Membership.objects.select_for_update().select_related("organization", "user").get(pk=membership.pk)
    organization = membership.organization
    _require_org_admin(actor, organization)
    if role not in Role.values:
        raise field_error("role", f"'{role}' is not one of {', '.join(Role.values)}.")
    if role == membership.role:
        return membership
    touches_owner = Role.OWNER in (role, membership.role)
    if touches_owner and not may_manage_owners(actor, organization):
        raise PermissionDenied("Only an owner may grant or take away the owner role.", fields={"role": ["Owner only."]})
    if membership.role == Role.OWNER and _owner_count(organization) == 1:
        raise Conflict("An organization must keep at least one owner.", fields={"role": ["Last owner."]})
    membership.role = role
    audited_save(membership, actor=actor, reason=f"role set to {role}")
    forget_org_roles(membership.user)
    return membership


@transaction.atomic
def membership_remove(*, actor: User, membership: Membership) -> None:
    """Remove a member; their per-environment permissions in the organization go with them."""
    # Locks the organization row too (see membership_change_role): the last-owner check stays true.
    membership = Membership.objects.select_for_update().select_related("organization", "user").get(pk=membership.pk)
    organization = membership.organization
    if actor != membership.user:
        _require_org_admin(actor, organization)
        if membership.role == Role.OWNER and not may_manage_owners(actor, organization):
            raise PermissionDenied("Only an owner may remove an owner.")
    if membership.role == Role.OWNER and _owner_count(organization) == 1:
        raise Conflict("An organization must keep at least one owner.")
    signals.member_removed.send(sender=Membership, membership=membership, actor=actor)
    now = timezone.now()
    # One save per key (not QuerySet.update) so that each revocation is in the history.
    for key in ApiKey.objects.select_for_update().filter(
        organization=organization, owner=membership.user, revoked_at__isnull=True
    ):
        key.revoked_at = now
        audited_save(key, actor=actor, reason="api key revoked: owner left the organization", clean=False)
    audited_delete(membership, actor=actor, reason="member removed")
    forget_org_roles(membership.user)


@transaction.atomic
def service_account_create(
    *, actor: User, organization: Organization, name: str, description: str = ""
) -> ServiceAccount:
    """Create a service-account user (cannot sign in) as a member of the organization."""
    _require_org_admin(actor, organization)
    base = slugify(name)[:40]
    if not base:
        raise field_error("name", "Give a name made of letters, digits, spaces or dashes.")
    if ServiceAccount.objects.filter(organization=organization, name=name).exists():
        raise Conflict(f"A service account named '{name}' exists.", fields={"name": ["Already exists."]})
    username = f"svc-{organization.slug}-{base}"[:150]
    if User.objects.filter(username=username).exists():
        raise Conflict(f"The user name '{username}' is taken.", fields={"name": ["Already exists."]})
    user = User(username=username, first_name=name[:150], is_active=True)
    user.set_unusable_password()
    user.save()
    account = ServiceAccount(organization=organization, user=user, name=name, description=description, created_by=actor)
    audited_save(account, actor=actor, reason="service account created")
    membership = Membership(organization=organization, user=user, role=Role.MEMBER)
    audited_save(membership, actor=actor, reason="service account membership")
    signals.member_added.send(sender=Membership, membership=membership, actor=actor)
    return account


# --- API keys -------------------------------------------------------------------------------

_KEY_ALPHABET = string.ascii_letters + string.digits
KEY_PREFIX = "pnx"
# pnx_<prefix>_<secret>, each part 1 to 64 characters of the alphabet (ASCII only: no \d or \w).
_TOKEN_SHAPE = re.compile(rf"{KEY_PREFIX}_([A-Za-z0-9]{{1,64}})_[A-Za-z0-9]{{1,64}}")


def _hash_token(token: str) -> str:
    # The token carries 238 bits of randomness, so a fast keyed digest is enough; a slow password
    # hash would only add latency to every API request.
    return hmac.new(settings.SECRET_KEY.encode(), token.encode(), hashlib.sha256).hexdigest()


def _clean_scopes(scopes) -> list[str]:
    if not isinstance(scopes, list | tuple) or not scopes:
        raise field_error("scopes", f"Give a non-empty list of scopes from: {', '.join(SCOPES)}.")
    bad = [s for s in scopes if s not in SCOPES]
    if bad:
        raise field_error("scopes", f"Unknown scope(s) {', '.join(map(str, bad))}; allowed: {', '.join(SCOPES)}.")
    return [s for s in SCOPES if s in scopes]


@transaction.atomic
def api_key_create(
    *, actor: User, organization: Organization, name: str, scopes, owner=None, expires_at: datetime | None = None
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret token (the only time the token exists)."""
    owner = owner or actor
    if owner != actor:
        _require_org_admin(actor, organization)
        # A key owned by another person would let its creator act as them (an admin could become
        # an owner that way): keys for others are machine keys, owned by a service account.
        if not ServiceAccount.objects.filter(organization=organization, user=owner).exists():
            raise field_error("owner", "Keys for someone else must be owned by a service account of the organization.")
    if not is_org_member(actor, organization):
        raise PermissionDenied(f"You are not a member of organization '{organization.slug}'.")
    if not _is_member_row(owner, organization):
        raise field_error("owner", "The key's owner must be a member of the organization.")
    if expires_at is not None and expires_at <= timezone.now():
        raise field_error("expires_at", "Must be in the future.")
    scopes = _clean_scopes(scopes)
    for _attempt in range(5):
        prefix = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(10))
        if not ApiKey.objects.filter(prefix=prefix).exists():
            break
    secret = "".join(secrets.choice(_KEY_ALPHABET) for _ in range(40))
    token = f"{KEY_PREFIX}_{prefix}_{secret}"
    key = ApiKey(
        organization=organization,
        owner=owner,
        name=name,
        prefix=prefix,
        key_hash=_hash_token(token),
        scopes=scopes,
        expires_at=expires_at,
        created_by=actor,
    )
    try:
        with transaction.atomic():
            audited_save(key, actor=actor, reason="api key created")
    except IntegrityError as exc:
        raise Conflict("Could not allocate a unique key prefix; try again.") from exc
    return key, token


def _is_member_row(user, organization) -> bool:
    return Membership.objects.filter(organization=organization, user=user).exists()


@transaction.atomic
def api_key_revoke(*, actor: User, key: ApiKey) -> ApiKey:
    key = ApiKey.objects.select_for_update().get(pk=key.pk)
    if key.owner_id != actor.pk:
        _require_org_admin(actor, key.organization)
    if key.revoked_at is None:
        key.revoked_at = timezone.now()
        audited_save(key, actor=actor, reason="api key revoked")
    return key


def api_key_prefix(token: str) -> str | None:
    """The prefix of a well-formed bearer token (`pnx_<prefix>_<secret>`), else None. Checked before
    any query or cache key: a NUL or other odd character must not reach the database (PostgreSQL
    refuses NUL in strings and would answer with a 500 instead of a 401)."""
    match = _TOKEN_SHAPE.fullmatch(token)
    return match[1] if match else None


def api_key_authenticate(token: str) -> ApiKey | None:
    """The active key for a bearer token, or None. Marks the key used (at most once a minute,
    without a history row: use is not a change of configuration)."""
    prefix = api_key_prefix(token)
    if prefix is None:
        return None
    # One query: the key, its owner, its organization and the owner's role there (None: not a member).
    found = api_key_lookup.key_with_owner(prefix)
    if found is None:
        return None
    key = found[0]
    key.owner_role = found[1]  # type: ignore[attr-defined]  # the per-request memo's seed (tenancy.permissions)
    if not hmac.compare_digest(key.key_hash, _hash_token(token)):
        return None
    if not key.is_active or not key.owner.is_active or key.owner_role is None:  # type: ignore[attr-defined]
        return None
    now = timezone.now()
    resolution = timedelta(seconds=settings.API_KEY_LAST_USED_RESOLUTION_SECONDS)
    if key.last_used_at is None or now - key.last_used_at > resolution:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        key.last_used_at = now
    return key
