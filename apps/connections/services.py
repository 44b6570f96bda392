"""Connection roles and per-environment bindings, validated on write."""

import logging

from django.db import transaction

from apps.core.errors import Conflict, PermissionDenied, field_error
from apps.core.queue import enqueue
from apps.core.services import audited_delete, audited_save, refuse_unknown, validate
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment, Kind
from apps.environments.rows import PerEnvironmentRows
from apps.tenancy import revisions
from apps.variables import services as variable_services

from .models import ConnectionBinding, ConnectionRole, ConnectionTest
from .schemas import validate_params
from .targets import check_params

logger = logging.getLogger("planasonix.connections")

ROLE_FIELDS = {"kind", "description", "required_in"}
BINDINGS = PerEnvironmentRows(ConnectionBinding, "role", set_verb="bound", delete_verb="unbound")


may_define = variable_services.may_define  # the same scopes define connection roles as variables


def _require_definer(actor: User, organization, project) -> None:
    variable_services.require_definer(actor, organization, project, what="connection roles")


def _check_role(role: ConnectionRole) -> None:
    if role.project is not None and role.project.organization_id != role.organization_id:
        raise field_error("project", "Must be a project of the same organization.")
    validate(role, exclude=["organization", "project"], validate_unique=False)
    if not isinstance(role.required_in, list) or any(k not in Kind.values for k in role.required_in):
        raise field_error("required_in", f"A list of environment kinds: {', '.join(Kind.values)}.")


@transaction.atomic
def connection_role_create(
    *, actor: User, organization, name: str, kind: str, project=None, **fields
) -> ConnectionRole:
    refuse_unknown(fields, ROLE_FIELDS)
    _require_definer(actor, organization, project)
    role = ConnectionRole(organization=organization, project=project, name=name, kind=kind, **fields)
    _check_role(role)
    if ConnectionRole.objects.filter(organization=organization, project=project, name=name).exists():
        raise Conflict(f"A connection role named '{name}' exists here.", fields={"name": ["Already exists."]})
    audited_save(role, actor=actor, reason="connection role created", clean=False)
    revisions.bump(organization.pk)
    return role


@transaction.atomic
def connection_role_update(*, actor: User, role: ConnectionRole, **changes) -> ConnectionRole:
    role = (
        ConnectionRole.objects.select_for_update(of=("self",)).select_related("organization", "project").get(pk=role.pk)
    )
    refuse_unknown(changes, ROLE_FIELDS)
    _require_definer(actor, role.organization, role.project)
    if "kind" in changes and changes["kind"] != role.kind and role.bindings.exists():
        raise field_error("kind", "The kind of a bound role cannot change; remove its bindings first.")
    for name, value in changes.items():
        setattr(role, name, value)
    _check_role(role)
    audited_save(role, actor=actor, reason="changed: " + ", ".join(sorted(changes)), clean=False)
    revisions.bump(role.organization_id)
    return role


@transaction.atomic
def connection_role_delete(*, actor: User, role: ConnectionRole) -> None:
    _require_definer(actor, role.organization, role.project)
    for binding in role.bindings.select_related("environment__policy"):
        perms.require_config_edit(actor, binding.environment)
    audited_delete(role, actor=actor, reason="connection role deleted")
    revisions.bump(role.organization_id)


def validate_binding(*, actor: User, role: ConnectionRole, environment: Environment, params, credential=None) -> dict:
    """Check a binding before writing it (admin forms call this too)."""
    if environment.organization_id != role.organization_id:
        raise field_error("environment", "Must be an environment of the role's organization.")
    perms.require_config_edit(actor, environment)
    validate_params(role.kind, params)
    check_params(role.kind, params, environment=environment)
    if isinstance(params, dict):
        texts = ((f"params.{key}", value, f"Parameter '{key}'") for key, value in params.items())
        variable_services.refuse_secret_references(role.organization_id, texts)
    if credential is not None:
        if credential.organization_id != role.organization_id:
            raise field_error("credential", f"Secret '{credential.name}' belongs to another organization.")
        if not credential.allowed_environments.filter(pk=environment.pk).exists():
            raise field_error(
                "credential", f"Secret '{credential.name}' is not allowed in environment '{environment.slug}'."
            )
    return params


@transaction.atomic
def connection_binding_set(*, actor: User, role: ConnectionRole, environment: Environment, params, credential=None):
    """Bind (or re-bind) a role in an environment."""
    environment = Environment.objects.select_related("policy").get(pk=environment.pk)
    params = validate_binding(actor=actor, role=role, environment=environment, params=params, credential=credential)
    return BINDINGS.set(role, environment, {"params": params, "credential": credential}, actor=actor)


@transaction.atomic
def connection_binding_delete(*, actor: User, binding: ConnectionBinding) -> None:
    BINDINGS.delete(binding, actor=actor)


@transaction.atomic
def connection_test_request(*, actor: User, binding: ConnectionBinding) -> ConnectionTest:
    """Queue a reachability check of a binding; a worker runs it (resolution.tasks)."""
    if not (perms.may(actor, perms.RUN, binding.environment) or perms.may_edit_config(actor, binding.environment)):
        raise PermissionDenied(
            f"Testing a connection in '{binding.environment.slug}' needs run_in_environment or "
            "change_environment_config."
        )
    # Decided now, while the caller's API key (if any) still narrows them: the worker only knows
    # the user, and a `write` key must not get its owner's credentials sent to a host it just set.
    test = ConnectionTest.objects.create(
        binding=binding,
        requested_by=actor,
        may_use_credentials=perms.may(actor, perms.USE_CREDENTIALS, binding.environment),
    )
    transaction.on_commit(lambda: enqueue_connection_test(test.pk), robust=True)
    return test


def enqueue_connection_test(test_pk: int) -> None:
    """Wake a worker for a queued test, by task name: the task lives in apps.resolution, above this
    app. If the broker is down the row stays queued and resolution's beat sweep sends it later."""
    enqueue("apps.resolution.tasks.test_connection", [test_pk])
