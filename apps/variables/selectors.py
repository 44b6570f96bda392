"""Permission-filtered reads for variables and overrides."""

from django.db.models import QuerySet

from apps.resolution.interpolation import PLACEHOLDER

from .models import Variable, VariableOverride, VariableType


def variables_for(user) -> QuerySet[Variable]:
    return Variable.objects.restrict(user).select_related("organization", "project", "pipeline", "default_secret")


def overrides_for(user) -> QuerySet[VariableOverride]:
    """Overrides in the environments the user may view."""
    return VariableOverride.objects.restrict(user).select_related("variable", "environment", "secret")


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
