"""Permission-filtered reads for variables and overrides."""

from django.db.models import QuerySet

from .models import Variable, VariableOverride


def variables_for(user) -> QuerySet[Variable]:
    return Variable.objects.restrict(user).select_related("organization", "project", "pipeline", "default_secret")


def overrides_for(user) -> QuerySet[VariableOverride]:
    """Overrides in the environments the user may view."""
    return VariableOverride.objects.restrict(user).select_related("variable", "environment", "secret")
