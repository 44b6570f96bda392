"""The permission door: the one place that answers "may this user do X in environment E".

Organization owners and admins (and Django superusers) may do everything in their organization.
Everyone else needs a guardian object permission on the environment, granted to them or to one
of their groups; `manage_environment` includes every other codename. Global (model-level)
permissions are never consulted (`accept_global_perms=False` in guardian's terms), so a stray
global grant cannot expose every environment. An API key narrows its owner: it reaches only its
own organization and only what its scopes allow.

The user's grants are read once (one query) and memoized on the user object for the request.
"""

from django.contrib.auth.models import AnonymousUser
from django.db.models import Q, QuerySet

from apps.core.errors import PermissionDenied
from apps.core.scopes import scopes_grant
from apps.tenancy.models import ADMIN_ROLES
from apps.tenancy.permissions import api_key_of, member_organization_ids, org_role, prefetch_org_roles

from .models import Environment, EnvironmentGroupObjectPermission, EnvironmentUserObjectPermission

VIEW = "view_environment"
CHANGE_CONFIG = "change_environment_config"
RUN = "run_in_environment"
REQUEST_PROMOTION = "request_promotion"
APPROVE_PROMOTION = "approve_promotion"
USE_CREDENTIALS = "use_environment_credentials"
MANAGE_SCHEDULES = "manage_schedules"
MANAGE = "manage_environment"

CODENAMES = (VIEW, CHANGE_CONFIG, RUN, REQUEST_PROMOTION, APPROVE_PROMOTION, USE_CREDENTIALS, MANAGE_SCHEDULES, MANAGE)

# What a new member gets on every development environment ("developers default to dev
# resources"); production and staging rights are granted explicitly.
DEVELOPMENT_DEFAULTS = (VIEW, CHANGE_CONFIG, RUN, USE_CREDENTIALS, MANAGE_SCHEDULES)

# The API-key scope each codename needs.
SCOPE_FOR = {
    VIEW: "read",
    CHANGE_CONFIG: "write",
    REQUEST_PROMOTION: "write",
    APPROVE_PROMOTION: "write",
    MANAGE_SCHEDULES: "write",
    RUN: "run",
    USE_CREDENTIALS: "run",
    MANAGE: "admin",
}

_CACHE_ATTR = "_planasonix_env_perms"
_ANYWHERE_ATTR = "_planasonix_env_anywhere"


def _check_codename(codename: str) -> None:
    if codename not in CODENAMES:
        raise ValueError(f"unknown environment permission '{codename}'")


def _grants(user) -> dict[int, set[str]]:
    """environment id -> codenames granted to the user directly or through groups."""
    cached = user.__dict__.get(_CACHE_ATTR)
    if cached is not None:
        return cached
    grants: dict[int, set[str]] = {}
    for _user_id, env_id, codename in _grant_rows([user.pk]):
        grants.setdefault(env_id, set()).add(codename)
    user.__dict__[_CACHE_ATTR] = grants
    return grants


def _grant_rows(user_ids: list[int]):
    """(user id, environment id, codename) of the users' own and their groups' grants, in one query."""
    rows = EnvironmentUserObjectPermission.objects.filter(user_id__in=user_ids).values_list(
        "user_id", "content_object_id", "permission__codename"
    )
    group_rows = EnvironmentGroupObjectPermission.objects.filter(group__user__in=user_ids).values_list(
        "group__user", "content_object_id", "permission__codename"
    )
    return rows.order_by().union(group_rows.order_by(), all=True)


def prefetch(users) -> None:
    """Memoize the grants and organization roles of many users at once (two queries), so `may`
    over a list of people (the approvers of a request) costs no query per person."""
    pending = [u for u in users if u is not None and u.is_authenticated and _CACHE_ATTR not in u.__dict__]
    prefetch_org_roles(pending)
    if not pending:
        return
    grants: dict[int, dict[int, set[str]]] = {u.pk: {} for u in pending}
    for user_id, env_id, codename in _grant_rows(list(grants)):
        grants[user_id].setdefault(env_id, set()).add(codename)
    for user in pending:
        user.__dict__[_CACHE_ATTR] = {env_id: set(codes) for env_id, codes in grants[user.pk].items()}


def forget(user) -> None:
    """Drop the memoized grants (after granting or revoking within the same request)."""
    if user is not None:
        user.__dict__.pop(_CACHE_ATTR, None)
        user.__dict__.pop(_ANYWHERE_ATTR, None)


def _administered_organization_ids(user) -> set[int]:
    """Organizations where the user is owner or admin, narrowed to an API key's organization.

    Not tenancy's admin_organization_ids: that one also demands the key's `admin` scope (right for
    administering the organization), which would leave an admin's read or write key with no
    environment at all. Here the key's scope is checked per codename (SCOPE_FOR) instead."""
    return {org_id for org_id in member_organization_ids(user) if org_role(user, org_id) in ADMIN_ROLES}


def _key_allows(user, codename: str, organization_id: int) -> bool:
    key = api_key_of(user)
    if key is None:
        return True
    return key.organization_id == organization_id and scopes_grant(key.scopes, SCOPE_FOR[codename])


def may(user, codename: str, environment: Environment) -> bool:
    """May `user` do `codename` in `environment`?"""
    _check_codename(codename)
    if user is None or isinstance(user, AnonymousUser) or not user.is_authenticated or not user.is_active:
        return False
    if not _key_allows(user, codename, environment.organization_id):
        return False
    if user.is_superuser:
        return True
    if environment.organization_id in _administered_organization_ids(user):
        return True
    if environment.organization_id not in member_organization_ids(user):
        return False
    held = _grants(user).get(environment.pk, set())
    return codename in held or MANAGE in held


def require(user, codename: str, environment: Environment) -> None:
    """Raise PermissionDenied (naming the permission and environment) unless `may`."""
    if not may(user, codename, environment):
        raise PermissionDenied(
            f"You lack the '{codename}' permission on environment '{environment.slug}'.",
            code="permission_denied",
        )


def holds_anywhere(user, codename: str) -> bool:
    """May `user` do `codename` in at least one environment? Memoized on the user object like the
    grants (one query per codename per request however many admins, buttons and menus ask)."""
    answers = user.__dict__.setdefault(_ANYWHERE_ATTR, {}) if user is not None else {}
    if codename not in answers:
        answers[codename] = environments_where(user, codename).exists()
    return answers[codename]


def environments_where(user, codename: str, queryset: QuerySet | None = None) -> QuerySet:
    """The environments (of `queryset`, default all) in which `user` may do `codename`."""
    _check_codename(codename)
    queryset = Environment.objects.all() if queryset is None else queryset
    if user is None or not user.is_authenticated or not user.is_active:
        return queryset.none()
    key = api_key_of(user)
    if key is not None:
        if not scopes_grant(key.scopes, SCOPE_FOR[codename]):
            return queryset.none()
        queryset = queryset.filter(organization_id=key.organization_id)
    if user.is_superuser:
        return queryset
    granted = [env_id for env_id, codes in _grants(user).items() if codename in codes or MANAGE in codes]
    return queryset.filter(
        Q(organization_id__in=_administered_organization_ids(user))
        | Q(pk__in=granted, organization_id__in=member_organization_ids(user))
    )


def held_codenames(user, environment: Environment) -> list[str]:
    """Every codename the user may use in the environment (for screens and API payloads)."""
    return [codename for codename in CODENAMES if may(user, codename, environment)]


def may_edit_config(user, environment: Environment) -> bool:
    """Editing an environment's configuration (overrides, bindings, policy) needs
    change_environment_config, and manage_environment as well while its policy is locked."""
    if not may(user, CHANGE_CONFIG, environment):
        return False
    policy = getattr(environment, "policy", None)
    return not (policy is not None and policy.locked) or may(user, MANAGE, environment)


def require_config_edit(user, environment: Environment) -> None:
    """Raise PermissionDenied unless may_edit_config, saying which permission is missing."""
    require(user, CHANGE_CONFIG, environment)
    if not may_edit_config(user, environment):
        raise PermissionDenied(
            f"Environment '{environment.slug}' is locked; editing its configuration needs manage_environment.",
            code="environment_locked",
        )


def users_with(codename: str, environment: Environment):
    """Active users who may do `codename` in the environment through a grant (theirs or a group's,
    `manage_environment` included) or as owners/admins of its organization (two queries)."""
    from django.contrib.auth import get_user_model

    _check_codename(codename)
    codenames = {codename, MANAGE}
    direct = EnvironmentUserObjectPermission.objects.filter(
        content_object=environment, permission__codename__in=codenames
    ).values("user_id")
    grouped = EnvironmentGroupObjectPermission.objects.filter(
        content_object=environment, permission__codename__in=codenames
    ).values("group_id")
    return (
        get_user_model()
        .objects.filter(is_active=True)
        # One filter() call: both membership conditions apply to the same membership row.
        .filter(
            Q(memberships__organization_id=environment.organization_id)
            & (Q(pk__in=direct) | Q(groups__in=grouped) | Q(memberships__role__in=ADMIN_ROLES))
        )
        .distinct()
    )
