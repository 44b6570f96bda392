"""Organization-level roles and visibility: who sees and who administers an organization.

`sees_all` is the one statement of the superuser rule; `organization_ids_where` is what every
organization-scoped queryset's `restrict()` (apps/tenancy/querysets.py) filters by."""

from apps.core.errors import PermissionDenied
from apps.core.scopes import API_KEY_ATTR

from .models import ADMIN_ROLES, Membership, Role

VIEW = "view"  # members see their organization's rows
ADMIN = "admin"  # owners and admins administer them
ORGANIZATION_ACTIONS = (VIEW, ADMIN)


def is_superuser(user) -> bool:
    """An active Django superuser (whatever they authenticated with; an API key still narrows them)."""
    return bool(getattr(user, "is_authenticated", False) and user.is_active and user.is_superuser)


def sees_all(user) -> bool:
    """Superusers signed in without an API key see every organization's rows; an API key narrows
    even a superuser to its own organization."""
    return is_superuser(user) and api_key_of(user) is None


def organization_ids_where(user, action: str = VIEW) -> set[int] | None:
    """The organizations whose rows `user` may `action` (view: member; admin: owner or admin), or
    None for all of them (sees_all)."""
    if action not in ORGANIZATION_ACTIONS:
        raise ValueError(f"unknown organization action '{action}'")
    if sees_all(user):
        return None
    return member_organization_ids(user) if action == VIEW else admin_organization_ids(user)


def sees_some_organization(user, action: str = VIEW) -> bool:
    """Whether any organization's rows are open to `user` for `action` (admin menus and changelists)."""
    ids = organization_ids_where(user, action)
    return ids is None or bool(ids)


def may_manage_owners(user, organization) -> bool:
    """Only owners (and superusers) grant, change or remove the owner role."""
    if is_superuser(user):
        return True
    return Membership.objects.filter(organization=organization, user=user, role=Role.OWNER).exists()


def org_role(user, organization) -> str | None:
    """The user's role in the organization, or None. Cached on the user object per request."""
    if not getattr(user, "is_authenticated", False):
        return None
    cache = user.__dict__.setdefault("_planasonix_org_roles", None)
    if cache is None:
        cache = dict(Membership.objects.filter(user=user).values_list("organization_id", "role"))
        user.__dict__["_planasonix_org_roles"] = cache
    return cache.get(_org_id(organization))


def forget_org_roles(user) -> None:
    user.__dict__.pop("_planasonix_org_roles", None)


def prefetch_org_roles(users) -> None:
    """Read the organization roles of many users in one query and memoize them on each user object,
    so role checks over a list of people (a request's approvers) cost no query per person."""
    pending = [
        u for u in users if getattr(u, "is_authenticated", False) and u.__dict__.get("_planasonix_org_roles") is None
    ]
    if not pending:
        return
    roles: dict[int, dict[int, str]] = {u.pk: {} for u in pending}
    rows = Membership.objects.filter(user_id__in=list(roles)).values_list("user_id", "organization_id", "role")
    for user_id, organization_id, role in rows:
        roles[user_id][organization_id] = role
    for user in pending:
        user.__dict__["_planasonix_org_roles"] = dict(roles[user.pk])


def _org_id(organization) -> int:
    return organization.pk if hasattr(organization, "pk") else organization


def is_org_admin(user, organization) -> bool:
    """Owners and admins administer the organization; Django superusers administer every one.
    Through an API key, only with the `admin` scope and only in the key's organization."""
    if not key_allows(user, _org_id(organization), "admin"):
        return False
    if is_superuser(user):
        return True
    return org_role(user, organization) in ADMIN_ROLES


def require_org_admin(user, organization, what: str) -> None:
    """Refuse (403) unless `user` administers `organization` (is_org_admin); `what` ends the
    message: "Only owners and admins of '<slug>' <what>."."""
    if not is_org_admin(user, organization):
        raise PermissionDenied(f"Only owners and admins of '{organization.slug}' {what}.")


def is_platform_operator(user) -> bool:
    """Platform operators create organizations and set editions and limits: superusers and users
    holding tenancy.operate_platform. Being staff (admin access) is not enough, since every
    organization admin needs that. Never through an API key."""
    if not (getattr(user, "is_authenticated", False) and user.is_active) or api_key_of(user) is not None:
        return False
    return is_superuser(user) or user.has_perm("tenancy.operate_platform")


def is_org_member(user, organization) -> bool:
    """Members see their organization; through an API key, only the key's organization."""
    key = api_key_of(user)
    if key is not None and key.organization_id != _org_id(organization):
        return False
    if is_superuser(user):
        return True
    return org_role(user, organization) is not None


def admin_organization_ids(user) -> set[int]:
    """Organizations the user administers through a membership (superusers: see is_org_admin)."""
    if not getattr(user, "is_authenticated", False):
        return set()
    org_role(user, 0)
    ids = {org_id for org_id, role in user.__dict__["_planasonix_org_roles"].items() if role in ADMIN_ROLES}
    return {org_id for org_id in ids if key_allows(user, org_id, "admin")}


def member_organization_ids(user) -> set[int]:
    """Organizations the user belongs to (narrowed to the API key's organization)."""
    if not getattr(user, "is_authenticated", False):
        return set()
    org_role(user, 0)
    key = api_key_of(user)
    ids = set(user.__dict__["_planasonix_org_roles"])
    return {key.organization_id} & ids if key is not None else ids


# --- API keys narrow their owner ------------------------------------------------------------
# ApiKeyAuthentication attaches the key to the user object it authenticates (a fresh object per
# request), so every permission check below and in the environments door sees the narrowing
# without each service having to carry the key along.

_KEY_ATTR = API_KEY_ATTR


def attach_api_key(user, key) -> None:
    """Narrow `user` to `key`. A key read with its owner's role (`owner_role`, see
    services.api_key_authenticate) also seeds the per-request role memo: narrowed to the key's
    organization, that role is the only one any check can ask for, so none needs a query."""
    user.__dict__[_KEY_ATTR] = key
    role = getattr(key, "owner_role", None)
    if role is not None and user.__dict__.get("_planasonix_org_roles") is None:
        user.__dict__["_planasonix_org_roles"] = {key.organization_id: role}


def api_key_of(user):
    """The API key the user authenticated with in this request, or None (session, shell, tasks)."""
    return getattr(user, "__dict__", {}).get(_KEY_ATTR)


def key_allows(user, organization_id: int, scope: str) -> bool:
    """False when the user acts through an API key of another organization or without `scope`."""
    from apps.core.scopes import scopes_grant

    key = api_key_of(user)
    if key is None:
        return True
    return key.organization_id == organization_id and scopes_grant(key.scopes, scope)
