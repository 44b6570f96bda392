"""Variable definitions and per-environment overrides, validated on write."""

from django.db import transaction

from apps.core import patterns
from apps.core.errors import Conflict, NotFound, PermissionDenied, ValidationFailed, field_error
from apps.core.services import audited_delete, audited_save, refuse_unknown, validate
from apps.core.types import User
from apps.environments import permissions as perms
from apps.environments.models import Environment, Kind, RuntimePolicy
from apps.environments.rows import PerEnvironmentRows
from apps.secrets.models import Secret
from apps.tenancy import revisions
from apps.tenancy.permissions import is_org_admin, is_org_member

from . import selectors, validation
from .models import PERSONAL_KINDS, VARIABLE_SETTINGS, PersonalOverride, Variable, VariableOverride, VariableType

DEFINITION_FIELDS = set(VARIABLE_SETTINGS)
OVERRIDES = PerEnvironmentRows(VariableOverride, "variable", set_verb="set", delete_verb="unset")


def may_define(actor: User, organization, project=None) -> bool:
    """Whether `actor` may define configuration (variables, connection roles) at this scope:
    organization-wide, owners and admins; for a project, its organization's members."""
    return is_org_admin(actor, organization) if project is None else is_org_member(actor, organization)


def require_definer(actor: User, organization, project, *, what: str = "variables") -> None:
    """Refuse unless `may_define`; the message names what is defined (`what`)."""
    if project is None:
        if not is_org_admin(actor, organization):
            raise PermissionDenied(f"Only organization owners and admins define organization-wide {what}.")
    elif not is_org_member(actor, organization):
        raise PermissionDenied(f"You are not a member of '{organization.slug}'.")


def _check_secret(organization, secret: Secret | None, field: str, environment: Environment | None = None) -> None:
    if secret is None:
        return
    if secret.organization_id != organization.pk:
        raise field_error(field, f"Secret '{secret.name}' belongs to another organization.")
    if environment is not None and not secret.allowed_environments.filter(pk=environment.pk).exists():
        raise field_error(field, f"Secret '{secret.name}' is not allowed in environment '{environment.slug}'.")


def _refuse_plaintext_credential(name: str, value, field: str, where: str) -> None:
    reason = validation.looks_like_credential(name, value)
    if reason:
        raise field_error(
            field,
            f"This looks like a credential ({reason}) and {where} forbids plaintext secrets; "
            "use a secret reference (a 'secret' variable pointing at a Secret) instead.",
        )


def refuse_secret_references(organization_id: int, texts) -> None:
    """Refuse text that interpolates a secret variable (directly or through another variable):
    a secret's value goes only into a connection's credential slot. `texts` yields (field, text,
    where), `where` naming the place for the message (e.g. "node 'orders_src', field 'query'")."""
    names = None
    errors: dict[str, list[str]] = {}
    for field, text, where in texts:
        named = selectors.interpolated_names(text)
        if not named:
            continue
        if names is None:
            names = selectors.secret_names(organization_id)
        for name in sorted(named & names):
            errors.setdefault(field, []).append(
                f"{where}: variable '{name}' is a secret (or interpolates one); secrets are never interpolated "
                "into text: use the secret as a connection's credential."
            )
    if errors:
        first, messages = next(iter(errors.items()))
        raise ValidationFailed(f"{first}: {messages[0]}", fields=errors, code="secret_interpolation")


def refuse_secrets_in_graph(pipeline, graph: dict) -> None:
    """Every text field of every node (pipelines.services calls this before storing a version)."""
    from apps.pipelines import graph as graphs

    texts = (
        (f"graph.nodes[{node.get('id')}].{field}", text, f"Node '{node.get('id')}', field '{field}'")
        for node in graph.get("nodes", [])
        for field, text in graphs.text_fields(node)
    )
    refuse_secret_references(pipeline.project.organization_id, texts)


def _check_definition(variable: Variable) -> None:
    """Everything a definition must satisfy: scope, type agreement, validation rules, default."""
    organization = variable.organization
    if variable.pipeline is not None:
        variable.project = variable.pipeline.project
    if variable.project is not None and variable.project.organization_id != organization.pk:
        raise field_error("project", "Must be a project of the same organization.")
    validate(variable, exclude=["organization", "project", "pipeline"], validate_unique=False)
    kinds = variable.required_in
    if not isinstance(kinds, list) or any(k not in Kind.values for k in kinds):
        raise field_error("required_in", f"A list of environment kinds: {', '.join(Kind.values)}.")
    if variable.regex:
        if variable.type != VariableType.STRING:
            raise field_error("regex", "Only string variables take a pattern.")
        patterns.check_pattern(variable.regex, "regex")
    if (variable.min_value is not None or variable.max_value is not None) and variable.type not in (
        VariableType.INTEGER,
        VariableType.NUMBER,
    ):
        raise field_error("min_value", "Only integer and number variables take bounds.")
    if variable.min_value is not None and variable.max_value is not None and variable.min_value > variable.max_value:
        raise field_error("max_value", "Must not be below min_value.")
    if variable.choices is not None:
        if variable.type in (VariableType.SECRET, VariableType.JSON) or not isinstance(variable.choices, list):
            raise field_error("choices", "Give a list of allowed values (not for json or secret variables).")
        for index, choice in enumerate(variable.choices):
            _coerce(variable, choice, f"choices.{index}", with_choices=False)
    clash = (
        Variable.objects.filter(organization=organization, name=variable.name)
        .exclude(pk=variable.pk)
        .exclude(type=variable.type)
        .first()
    )
    if clash is not None:
        raise field_error(
            "type",
            f"'{variable.name}' is already defined as {clash.type} at {clash.scope} scope; "
            "definitions of one name must agree on type.",
        )
    if variable.type == VariableType.SECRET:
        if variable.default_value is not None:
            raise field_error("default_value", "A secret variable's default is a secret reference (default_secret).")
        _check_secret(organization, variable.default_secret, "default_secret")
    else:
        if variable.default_secret is not None:
            raise field_error("default_secret", "Only secret variables reference secrets.")
        variable.default_value = _coerce(variable, variable.default_value, "default_value")
        refuse_secret_references(
            organization.pk, [("default_value", variable.default_value, f"The default of '{variable.name}'")]
        )
        if RuntimePolicy.objects.filter(environment__organization=organization, forbid_plaintext_secrets=True).exists():
            _refuse_plaintext_credential(variable.name, variable.default_value, "default_value", "an environment")


def _coerce(variable: Variable, value, field: str, with_choices: bool = True):
    return validation.coerce(
        variable.type,
        value,
        field=field,
        choices=variable.choices if with_choices else None,
        regex=variable.regex,
        min_value=variable.min_value,
        max_value=variable.max_value,
    )


@transaction.atomic
def variable_create(*, actor: User, organization, name: str, project=None, pipeline=None, **fields) -> Variable:
    """Define a variable at organization, project or pipeline scope."""
    refuse_unknown(fields, DEFINITION_FIELDS)
    if pipeline is not None:
        project = pipeline.project
    require_definer(actor, organization, project)
    variable = Variable(organization=organization, project=project, pipeline=pipeline, name=name, **fields)
    _check_definition(variable)
    scope_filter = {"pipeline": pipeline} if pipeline else {"project": project, "pipeline": None}
    if project is None:
        scope_filter = {"project": None, "pipeline": None}
    if Variable.objects.filter(organization=organization, name=name, **scope_filter).exists():
        raise Conflict(f"'{name}' is already defined at {variable.scope} scope here.", fields={"name": ["Exists."]})
    audited_save(variable, actor=actor, reason="variable defined", clean=False)
    revisions.bump(organization.pk)
    return variable


@transaction.atomic
def variable_update(*, actor: User, variable: Variable, **changes) -> Variable:
    """Change a definition; existing overrides must still be valid under the new rules."""
    variable = (
        Variable.objects.select_for_update(of=("self",)).select_related("organization", "project").get(pk=variable.pk)
    )
    refuse_unknown(changes, DEFINITION_FIELDS)
    require_definer(actor, variable.organization, variable.project)
    for name, value in changes.items():
        setattr(variable, name, value)
    _check_definition(variable)
    for override in variable.overrides.select_related("environment__policy"):
        try:
            _check_override_value(variable, override.environment, override.value, override.secret)
        except ValidationFailed as exc:
            raise ValidationFailed(
                f"The override in '{override.environment.slug}' would become invalid: {exc.message}",
                fields={"overrides": [exc.message]},
            ) from exc
    audited_save(variable, actor=actor, reason="changed: " + ", ".join(sorted(changes)), clean=False)
    revisions.bump(variable.organization_id)
    return variable


@transaction.atomic
def variable_delete(*, actor: User, variable: Variable) -> None:
    require_definer(actor, variable.organization, variable.project)
    for environment in {o.environment for o in variable.overrides.select_related("environment__policy")}:
        perms.require_config_edit(actor, environment)
    audited_delete(variable, actor=actor, reason="variable deleted")
    revisions.bump(variable.organization_id)


def _check_override_value(variable: Variable, environment: Environment, value, secret) -> object:
    if environment.organization_id != variable.organization_id:
        raise field_error("environment", "Must be an environment of the variable's organization.")
    if variable.type == VariableType.SECRET:
        if value is not None:
            raise field_error("value", "A secret variable takes a secret reference (secret), not a value.")
        if secret is None:
            raise field_error("secret", "Give the secret to use in this environment.")
        _check_secret(variable.organization, secret, "secret", environment)
        return None
    if secret is not None:
        raise field_error(
            "secret", f"'{variable.name}' is a {variable.type} variable; only secret variables take secrets."
        )
    if value is None:
        raise field_error("value", "Give a value.")
    value = _coerce(variable, value, "value")
    refuse_secret_references(
        variable.organization_id, [("value", value, f"The value of '{variable.name}' in '{environment.slug}'")]
    )
    if environment.policy.forbid_plaintext_secrets:
        _refuse_plaintext_credential(variable.name, value, "value", f"environment '{environment.slug}'")
    return value


def validate_override(*, actor: User, variable: Variable, environment: Environment, value=None, secret=None):
    """Check an override before writing it (admin forms call this too). Returns the typed value."""
    perms.require_config_edit(actor, environment)
    return _check_override_value(variable, environment, value, secret)


@transaction.atomic
def variable_override_set(*, actor: User, variable: Variable, environment: Environment, value=None, secret=None):
    """Set (create or replace) a variable's value in one environment."""
    environment = Environment.objects.select_related("policy", "organization").get(pk=environment.pk)
    value = validate_override(actor=actor, variable=variable, environment=environment, value=value, secret=secret)
    return OVERRIDES.set(variable, environment, {"value": value, "secret": secret}, actor=actor)


@transaction.atomic
def variable_override_delete(*, actor: User, override: VariableOverride) -> None:
    OVERRIDES.delete(override, actor=actor)


@transaction.atomic
def overrides_clone(
    *, actor: User, source: Environment, target: Environment, variables=None, replace: bool = False
) -> int:
    """Copy overrides from one environment to another (all variables, or those given). Every copied
    value is validated for the target (a production policy may refuse a dev value). Returns count."""
    perms.require(actor, perms.VIEW, source)
    perms.require_config_edit(actor, target)
    if source.organization_id != target.organization_id:
        raise field_error("source", "Both environments must belong to one organization.")
    queryset = VariableOverride.objects.filter(environment=source).select_related("variable", "secret")
    if variables is not None:
        queryset = queryset.filter(variable__in=variables)
    existing = set(VariableOverride.objects.filter(environment=target).values_list("variable_id", flat=True))
    copied = 0
    for override in queryset:
        if override.variable_id in existing and not replace:
            continue
        variable_override_set(
            actor=actor, variable=override.variable, environment=target, value=override.value, secret=override.secret
        )
        copied += 1
    return copied


# --- personal overrides (development only) ----------------------------------------------------


def validate_personal_override(*, actor: User, variable: Variable, environment: Environment, value=None, secret=None):
    """Check a personal value before writing it (the screens' forms call this too). The variable and
    the environment must be visible to `actor`, the environment a development one; the value is
    checked exactly as an override's is. Returns the typed value."""
    if not selectors.variables_for(actor).filter(pk=variable.pk).exists():
        raise field_error("variable", f'Invalid pk "{variable.pk}" - object does not exist.')
    perms.require(actor, perms.VIEW, environment)
    if environment.kind not in PERSONAL_KINDS:
        raise field_error(
            "environment",
            f"Personal overrides exist in development environments only; '{environment.slug}' is {environment.kind}.",
        )
    return _check_override_value(variable, environment, value, secret)


@transaction.atomic
def personal_override_set(
    *, actor: User, variable: Variable, environment: Environment, value=None, secret=None
) -> PersonalOverride:
    """Set (create or replace) the actor's own value for a variable in one development environment.
    It changes no shared configuration, so the organization's revision is not bumped: resolution keys
    a personal answer by the member's values themselves."""
    environment = Environment.objects.select_related("policy", "organization").get(pk=environment.pk)
    value = validate_personal_override(
        actor=actor, variable=variable, environment=environment, value=value, secret=secret
    )
    row = (
        PersonalOverride.objects.select_for_update()
        .filter(user_id=actor.pk, variable=variable, environment=environment)
        .first()
    )
    if row is None:
        row = PersonalOverride(user=actor, variable=variable, environment=environment)
    elif row.value == value and row.secret_id == (secret.pk if secret else None):
        return row
    row.value, row.secret = value, secret
    audited_save(row, actor=actor, reason=f"personal value of {variable.name} set in {environment.slug}", clean=False)
    return row


@transaction.atomic
def personal_override_delete(*, actor: User, override: PersonalOverride) -> None:
    """Clear the actor's own personal value (another member's row is a missing row)."""
    if override.user_id != actor.pk:
        raise NotFound("No such personal override.")
    audited_delete(
        override,
        actor=actor,
        reason=f"personal value of {override.variable.name} cleared in {override.environment.slug}",
    )
