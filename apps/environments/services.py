"""Writes for environments, runtime policies, freeze windows and per-environment permissions."""

from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.db.models import Max, QuerySet
from django.utils import timezone
from django.utils.text import slugify

from apps.core import patterns
from apps.core.errors import Conflict, PermissionDenied, ValidationFailed, field_error
from apps.core.services import audited_delete, audited_save, audited_update, validate
from apps.core.types import User
from apps.notifications.services import emit
from apps.pipelines import expectations
from apps.tenancy import revisions
from apps.tenancy.models import Edition, Membership, Organization
from apps.tenancy.permissions import is_org_admin, require_org_admin

from . import permissions as perms
from .models import (
    POLICY_SETTINGS,
    Environment,
    EnvironmentGroupObjectPermission,
    EnvironmentUserObjectPermission,
    FreezeWindow,
    Kind,
    RuntimePolicy,
)

IMPLICIT_ENVIRONMENT_NAME = "Default"

# Starting policy per kind; a caller's `policy` values win.
POLICY_DEFAULTS = {
    Kind.DEVELOPMENT: {"sample_rows": 10_000, "log_level": "DEBUG", "allow_runtime_overrides": True},
    Kind.STAGING: {"log_level": "INFO", "allow_runtime_overrides": True},
    Kind.PRODUCTION: {
        "log_level": "INFO",
        "allow_runtime_overrides": False,
        "forbid_plaintext_secrets": True,
        "locked": True,
        "watch_first_runs": 3,
    },
    Kind.CUSTOM: {},
}

POLICY_FIELDS = set(POLICY_SETTINGS)
ENVIRONMENT_FIELDS = {"name", "slug", "position", "promotes_to", "is_protected", "color", "description"}


def _require_enterprise(organization: Organization, what: str) -> None:
    if organization.edition != Edition.ENTERPRISE:
        raise PermissionDenied(
            f"{what} needs the enterprise edition; organization '{organization.slug}' is on the "
            f"'{organization.edition}' edition, which has one implicit environment.",
            code="edition_required",
        )


def _check_name(organization: Organization, name: str) -> None:
    if not patterns.fullmatch(organization.environment_name_pattern, name or ""):
        raise field_error(
            "name",
            f"'{name}' does not match the organization's naming rule {organization.environment_name_pattern}.",
        )


def _check_promotes_to(environment: Environment, target: Environment | None) -> None:
    if target is None:
        return
    if target.organization_id != environment.organization_id:
        raise field_error("promotes_to", "Must be an environment of the same organization.")
    if environment.pk and target.pk == environment.pk:
        raise field_error("promotes_to", "An environment cannot promote to itself.")
    seen = {environment.pk}
    step: Environment | None = target
    while step is not None:
        if step.pk in seen:
            raise field_error("promotes_to", f"Promoting to '{target.slug}' would make the promotion path a loop.")
        seen.add(step.pk)
        step = step.promotes_to


def validate_environment_create(
    *, organization: Organization, name: str, slug: str = "", promotes_to: Environment | None = None
) -> None:
    """The rules an environment must pass before it is created (admin forms call this too)."""
    _require_enterprise(organization, "Creating an environment")
    count = Environment.objects.filter(organization=organization).count()
    if count >= organization.max_environments:
        raise ValidationFailed(
            f"Organization '{organization.slug}' already has {count} of its {organization.max_environments} "
            f"allowed environments.",
            fields={"name": ["The organization's environment limit is reached."]},
            code="limit_reached",
        )
    _check_name(organization, name)
    slug = slug or slugify(name)
    if Environment.objects.filter(organization=organization, slug=slug).exists():
        raise Conflict(f"An environment with slug '{slug}' exists.", fields={"slug": ["Already taken."]})
    _check_promotes_to(Environment(organization=organization), promotes_to)


@transaction.atomic
def environment_create(
    *,
    actor: User,
    organization: Organization,
    name: str,
    kind: str = Kind.DEVELOPMENT,
    slug: str = "",
    position: int | None = None,
    promotes_to: Environment | None = None,
    is_protected: bool | None = None,
    color: str = "#6b7280",
    description: str = "",
    policy: dict | None = None,
) -> Environment:
    """Create a stage and its runtime policy; members get development rights on development stages."""
    require_org_admin(actor, organization, "create environments")
    # Lock the organization row: concurrent creates must not both pass the limit check.
    organization = Organization.objects.select_for_update().get(pk=organization.pk)
    validate_environment_create(organization=organization, name=name, slug=slug, promotes_to=promotes_to)
    return _environment_create(
        actor=actor,
        organization=organization,
        name=name,
        kind=kind,
        slug=slug,
        position=position,
        promotes_to=promotes_to,
        is_protected=is_protected,
        color=color,
        description=description,
        policy=policy,
    )


def _environment_create(
    *, actor: User, organization, name, kind, slug, position, promotes_to, is_protected, color, description, policy
) -> Environment:
    if kind not in Kind.values:
        raise field_error("kind", f"'{kind}' is not one of {', '.join(Kind.values)}.")
    if position is None:
        top = Environment.objects.filter(organization=organization).aggregate(top=Max("position"))["top"]
        position = 0 if top is None else top + 10
    environment = Environment(
        organization=organization,
        name=name,
        slug=slug or slugify(name)[:63],
        kind=kind,
        position=position,
        is_protected=(kind == Kind.PRODUCTION) if is_protected is None else is_protected,
        color=color,
        description=description,
    )
    if not environment.slug:
        raise field_error("slug", "Could not derive a slug from the name; give one.")
    _check_promotes_to(environment, promotes_to)
    environment.promotes_to = promotes_to
    audited_save(environment, actor=actor, reason="environment created")
    defaults = dict(POLICY_DEFAULTS.get(kind, {}))
    if policy and {"sample_rows", "sample_percent"} & set(policy):
        # A caller choosing how to sample replaces the kind's default sampling; keeping both would
        # trip "rows or percent, not both" on a request that asked for one.
        defaults.pop("sample_rows", None)
        defaults.pop("sample_percent", None)
    values = {**defaults, **(policy or {})}
    channels = values.pop("notification_channels", None)
    unknown = set(values) - POLICY_FIELDS
    if unknown:
        raise ValidationFailed(
            f"Unknown policy fields: {', '.join(sorted(unknown))}",
            fields={f"policy.{u}": ["Unknown field."] for u in unknown},
        )
    runtime_policy = RuntimePolicy(environment=environment, **values)
    validate_policy_values(runtime_policy)
    audited_save(runtime_policy, actor=actor, reason="policy created", clean=False)
    if channels is not None:
        _set_channels(runtime_policy, channels)
    if kind == Kind.DEVELOPMENT:
        for membership in Membership.objects.filter(organization=organization).select_related("user"):
            grant_development_defaults(actor=actor, user=membership.user, environment=environment)
    return environment


def create_implicit_environment(*, actor: User, organization: Organization) -> Environment:
    """The single environment of a standard-edition organization (every run uses it)."""
    return _environment_create(
        actor=actor,
        organization=organization,
        name=IMPLICIT_ENVIRONMENT_NAME,
        kind=Kind.DEVELOPMENT,
        slug="default",
        position=0,
        promotes_to=None,
        is_protected=False,
        color="#6b7280",
        description="The organization's only environment (standard edition).",
        policy=None,
    )


def validate_environment_update(*, environment: Environment, changes: dict) -> None:
    """Rules an environment change must pass (admin forms call this too)."""
    unknown = set(changes) - ENVIRONMENT_FIELDS
    if "kind" in unknown and changes["kind"] == environment.kind:
        unknown.discard("kind")
    if "kind" in unknown:
        raise field_error("kind", "The kind of an environment cannot change; create a new environment instead.")
    if unknown:
        raise ValidationFailed(f"Unknown environment fields: {', '.join(sorted(unknown))}")
    organization = environment.organization
    if "name" in changes and changes["name"] != environment.name:
        _require_enterprise(organization, "Renaming an environment")
        _check_name(organization, changes["name"])
    if "slug" in changes and changes["slug"] != environment.slug:
        _require_enterprise(organization, "Renaming an environment")
        if (
            Environment.objects.filter(organization=organization, slug=changes["slug"])
            .exclude(pk=environment.pk)
            .exists()
        ):
            raise Conflict(f"An environment with slug '{changes['slug']}' exists.", fields={"slug": ["Already taken."]})
    if "promotes_to" in changes and changes["promotes_to"] != environment.promotes_to:
        _require_enterprise(organization, "Changing the promotion path")
        _check_promotes_to(environment, changes["promotes_to"])


@transaction.atomic
def environment_update(*, actor: User, environment: Environment, **changes) -> Environment:
    """Change an environment's own fields (manage_environment)."""
    environment = Environment.objects.select_for_update().select_related("organization").get(pk=environment.pk)
    perms.require(actor, perms.MANAGE, environment)
    validate_environment_update(environment=environment, changes=changes)
    changes.pop("kind", None)
    real = {k: v for k, v in changes.items() if getattr(environment, k) != v}
    if not real:
        return environment
    audited_update(environment, real, actor=actor)
    revisions.bump(environment.organization_id)  # resolved answers carry the environment's name and slug
    return environment


def validate_environment_delete(*, environment: Environment) -> None:
    if environment.organization.edition != Edition.ENTERPRISE:
        raise PermissionDenied(
            f"The implicit environment of a '{environment.organization.edition}' edition organization "
            "cannot be deleted.",
            code="edition_required",
        )
    if environment.is_protected:
        raise Conflict(f"Environment '{environment.slug}' is protected; unprotect it first.")


@transaction.atomic
def environment_delete(*, actor: User, environment: Environment) -> None:
    """Delete a stage (org admins; never a protected one)."""
    environment = Environment.objects.select_for_update().select_related("organization").get(pk=environment.pk)
    require_org_admin(actor, environment.organization, "delete environments")
    validate_environment_delete(environment=environment)
    for upstream in Environment.objects.filter(promotes_to=environment):
        upstream.promotes_to = None
        audited_save(upstream, actor=actor, reason=f"promotion target '{environment.slug}' deleted", clean=False)
    audited_delete(environment, actor=actor, reason="environment deleted")


# --- runtime policy -------------------------------------------------------------------------


def validate_policy_values(policy: RuntimePolicy) -> None:
    """Field rules of a policy (validators, rows-or-percent sampling); the admin checks a draft with it."""
    expectation_errors = expectations.collect_errors(policy.expectations, "expectations")
    if expectation_errors:
        first_field, first_messages = next(iter(expectation_errors.items()))
        raise ValidationFailed(f"{first_field}: {first_messages[0]}", fields=expectation_errors)
    validate(policy, exclude=["environment"], validate_unique=False)
    if policy.sample_rows is not None and policy.sample_percent is not None:
        raise field_error("sample_percent", "Sample by rows or by percent, not both.")


def _check_channels(environment: Environment, channels) -> None:
    foreign = [c for c in channels if c.organization_id != environment.organization_id]
    if foreign:
        raise field_error("notification_channels", f"Channel id {foreign[0].pk} is not a channel of this organization.")


def _set_channels(policy: RuntimePolicy, channels) -> None:
    channels = list(channels)
    _check_channels(policy.environment, channels)
    policy.notification_channels.set(channels)


def validate_policy_change(*, actor: User, environment: Environment, changes: dict) -> None:
    """Who may change the policy: config editors; a locked policy (or the lock) needs manage."""
    perms.require_config_edit(actor, environment)
    touches_lock = "locked" in changes and changes["locked"] != environment.policy.locked
    if touches_lock and not perms.may(actor, perms.MANAGE, environment):
        raise PermissionDenied(
            f"Locking or unlocking '{environment.slug}' needs manage_environment.", code="environment_locked"
        )
    unknown = set(changes) - POLICY_FIELDS - {"notification_channels"}
    if unknown:
        raise ValidationFailed(
            f"Unknown policy fields: {', '.join(sorted(unknown))}", fields={u: ["Unknown field."] for u in unknown}
        )
    _check_channels(environment, changes.get("notification_channels") or ())


@transaction.atomic
def runtime_policy_update(*, actor: User, environment: Environment, **changes) -> RuntimePolicy:
    """Change an environment's runtime policy."""
    # of=("self",): the policy is the nullable side of an outer join, which PostgreSQL cannot lock.
    environment = (
        Environment.objects.select_for_update(of=("self",))
        .select_related("organization", "policy")
        .get(pk=environment.pk)
    )
    validate_policy_change(actor=actor, environment=environment, changes=changes)
    policy = environment.policy
    channels = changes.pop("notification_channels", None)
    real = {k: v for k, v in changes.items() if getattr(policy, k) != v}
    for field, value in real.items():
        setattr(policy, field, value)
    if real:
        validate_policy_values(policy)
        audited_save(policy, actor=actor, reason="changed: " + ", ".join(sorted(real)), clean=False)
        revisions.bump(environment.organization_id)  # resolved configuration includes the policy
    if channels is not None:
        _set_channels(policy, channels)
    return policy


# --- freeze windows -------------------------------------------------------------------------


@transaction.atomic
def freeze_window_create(*, actor: User, environment: Environment, **fields) -> FreezeWindow:
    """Block deployments into the environment for a period (manage_environment)."""
    perms.require(actor, perms.MANAGE, environment)
    window = FreezeWindow(environment=environment, created_by=actor, **fields)
    audited_save(window, actor=actor, reason="freeze window created")
    return window


@transaction.atomic
def freeze_window_delete(*, actor: User, window: FreezeWindow) -> None:
    perms.require(actor, perms.MANAGE, window.environment)
    audited_delete(window, actor=actor, reason="freeze window removed")


def active_freeze(environment: Environment, at=None) -> FreezeWindow | None:
    """The freeze window in force at `at` (default now), if any."""
    at = at or timezone.now()
    for window in environment.freeze_windows.all():
        if window.active_at(at):
            return window
    return None


# --- per-environment permissions ------------------------------------------------------------


def _assign(codename: str, *, actor: User | None, environment: Environment, user=None, group=None, reason: str) -> None:
    """Create the grant row unless it exists, with the acting user in its history.

    Not guardian's assign_perm: its get_or_create leaves the history row without a user outside
    session requests (API keys, receivers, commands), and §8.5 wants who granted what."""
    permission = Permission.objects.get(content_type=ContentType.objects.get_for_model(Environment), codename=codename)
    model: type[EnvironmentUserObjectPermission] | type[EnvironmentGroupObjectPermission]
    if user is not None:
        model, holder = EnvironmentUserObjectPermission, {"user": user}
    else:
        model, holder = EnvironmentGroupObjectPermission, {"group": group}
    if model.objects.filter(permission=permission, content_object=environment, **holder).exists():
        return
    row = model(permission=permission, content_object=environment, **holder)
    audited_save(row, actor=actor, reason=reason, clean=False)


def grant_development_defaults(*, actor: User | None = None, user, environment: Environment) -> None:
    """Give a member the default rights on a development environment."""
    for codename in perms.DEVELOPMENT_DEFAULTS:
        _assign(codename, actor=actor, environment=environment, user=user, reason="development default")
    perms.forget(user)


@transaction.atomic
def permission_grant(*, actor: User, environment: Environment, codename: str, user=None, group: Group | None = None):
    """Grant a per-environment permission to a member or a group."""
    _check_grant(actor, environment, codename, user, group)
    _assign(codename, actor=actor, environment=environment, user=user, group=group, reason=f"granted {codename}")
    perms.forget(user)


@transaction.atomic
def permission_revoke(*, actor: User, environment: Environment, codename: str, user=None, group: Group | None = None):
    """Take a per-environment permission away (one row at a time, so history records it)."""
    _check_grant(actor, environment, codename, user, group)
    rows: QuerySet
    if user is not None:
        rows = EnvironmentUserObjectPermission.objects.filter(user=user, content_object=environment)
    else:
        rows = EnvironmentGroupObjectPermission.objects.filter(group=group, content_object=environment)
    for row in rows.filter(permission__codename=codename):
        audited_delete(row, actor=actor, reason=f"revoked {codename}")
    perms.forget(user)


def validate_permission_change(*, actor: User, environment: Environment, codename: str, user=None, group=None) -> None:
    """Who may grant or revoke `codename` (admin forms call this before saving)."""
    _check_grant(actor, environment, codename, user, group)


def _check_grant(actor: User, environment, codename, user, group) -> None:
    if codename not in perms.CODENAMES:
        raise field_error("codename", f"'{codename}' is not one of {', '.join(perms.CODENAMES)}.")
    if (user is None) == (group is None):
        raise ValidationFailed("Give either a user or a group.", fields={"user": ["Give a user or a group."]})
    if group is not None and not is_org_admin(actor, environment.organization):
        raise PermissionDenied("Only organization owners and admins grant permissions to groups.")
    perms.require(actor, perms.MANAGE, environment)
    if user is not None and not Membership.objects.filter(organization=environment.organization, user=user).exists():
        raise field_error("user", f"{user.username} is not a member of '{environment.organization.slug}'.")


def revoke_all_for_member(*, actor: User, user, organization: Organization) -> None:
    for row in EnvironmentUserObjectPermission.objects.filter(user=user, content_object__organization=organization):
        audited_delete(row, actor=actor, reason="member left the organization")
    perms.forget(user)


# --- notifications --------------------------------------------------------------------------


def environment_emit(environment: Environment, event: str, payload: dict, *, users=(), email_users: bool = False):
    """Send an event to the channels named by the environment's runtime policy (and to users'
    in-app inboxes; with `email_users`, to their email addresses too)."""
    channels = list(environment.policy.notification_channels.all())
    payload = {
        "environment": {"id": environment.pk, "slug": environment.slug, "kind": environment.kind},
        **payload,
    }
    return emit(
        event, payload, organization=environment.organization, channels=channels, users=users, email_users=email_users
    )
