"""Permission-filtered reads for variables and overrides."""

from dataclasses import dataclass

from django.db.models import Exists, OuterRef, QuerySet

from apps.resolution.interpolation import PLACEHOLDER
from apps.secrets.models import Secret

from .models import PERSONAL_KINDS, PersonalOverride, Variable, VariableOverride, VariableType


def variables_for(user) -> QuerySet[Variable]:
    return Variable.objects.restrict(user).select_related("organization", "project", "pipeline", "default_secret")


def overrides_for(user) -> QuerySet[VariableOverride]:
    """Overrides in the environments the user may view."""
    return VariableOverride.objects.restrict(user).select_related("variable", "environment", "secret")


def personal_overrides_of(user) -> QuerySet[PersonalOverride]:
    """The caller's own personal overrides (never another member's), in environments they may view."""
    return PersonalOverride.objects.owned_by(user).select_related("variable", "environment", "secret")


@dataclass(frozen=True, slots=True)
class PersonalValue:
    """A member's personal value for one variable definition, as resolution reads it."""

    value: object
    secret_id: int | None
    secret_name: str | None
    secret_allowed: bool  # the secret allows the environment (as a snapshot's allowed_secret_ids says)


def personal_for(user, environment) -> dict[int, PersonalValue]:
    """Variable definition id -> `user`'s personal value in `environment`: the one read resolution
    makes of personal overrides (one query). Empty, without a query, outside development and for
    nobody. Callers have checked that `user` may view (or run in) the environment."""
    if user is None or not getattr(user, "is_authenticated", False) or environment.kind not in PERSONAL_KINDS:
        return {}
    allowed = Secret.allowed_environments.through.objects.filter(
        secret_id=OuterRef("secret_id"), environment_id=environment.pk
    )
    rows = (
        PersonalOverride.objects.filter(user_id=user.pk, environment_id=environment.pk)
        .annotate(secret_allowed=Exists(allowed))
        .values_list("variable_id", "value", "secret_id", "secret__name", "secret_allowed")
        .order_by()
    )
    return {row[0]: PersonalValue(*row[1:]) for row in rows}


def interpolated_names(value) -> set[str]:
    """Variable names a (JSON) value interpolates."""
    if isinstance(value, str):
        return set(PLACEHOLDER.findall(value))
    if isinstance(value, list):
        return set().union(*(interpolated_names(v) for v in value)) if value else set()
    if isinstance(value, dict):
        return set().union(*(interpolated_names(v) for v in value.values())) if value else set()
    return set()


def secret_names(organization_id: int) -> set[str]:
    """Names of the organization's secret variables, and of the variables whose value (a default
    or any environment's override) interpolates one, directly or through others. Definitions of
    one name agree on type across the organization, so a name is a secret in every scope."""
    secret = set(
        Variable.objects.filter(organization_id=organization_id, type=VariableType.SECRET).values_list(
            "name", flat=True
        )
    )
    if not secret:
        return secret
    refers: dict[str, set[str]] = {}
    plain = Variable.objects.filter(organization_id=organization_id).exclude(type=VariableType.SECRET)
    for name, value in plain.values_list("name", "default_value"):
        refers.setdefault(name, set()).update(interpolated_names(value))
    overrides = VariableOverride.objects.filter(variable__in=plain)
    for name, value in overrides.values_list("variable__name", "value"):
        refers.setdefault(name, set()).update(interpolated_names(value))
    grew = True
    while grew:
        grew = False
        for name, named in refers.items():
            if name not in secret and named & secret:
                secret.add(name)
                grew = True
    return secret
