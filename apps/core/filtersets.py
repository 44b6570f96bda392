"""The one declaration of an API list's filters: relations by their slug or username (an
organization's, reached through the row's relations; an environment's), other filters where a list
needs its own, the rest as django-filter makes them."""

from collections.abc import Sequence

from django.db.models import Model
from django_filters import rest_framework as filters
from django_filters.filterset import filterset_factory


def declared_filterset(model: type[Model], fields: Sequence[str], **declared: str | filters.Filter):
    """A FilterSet of `model` on `fields` (their order is the form's): each of `declared` a relation's
    slug path (`environment="environment__slug"`) or a filter of its own; the other fields
    django-filter's (a model field's choices, a foreign key's id)."""
    own = {name: filters.CharFilter(field_name=f) if isinstance(f, str) else f for name, f in declared.items()}
    return filterset_factory(model, type("DeclaredFilterSet", (filters.FilterSet,), own), list(fields))


def organization_filterset(
    model: type[Model], fields: Sequence[str], *, through: str = "", **declared: str | filters.Filter
) -> type[filters.FilterSet]:
    """`declared_filterset` with `organization`, an organization's slug, through the relations
    `through` (dunder-separated) from a row to what holds its organization."""
    organization = "__".join(filter(None, [through, "organization", "slug"]))
    return declared_filterset(model, fields, organization=organization, **declared)


def environment_row_filterset(model: type[Model], definition: str) -> type[filters.FilterSet]:
    """The filters of a definition's per-environment rows (a role's bindings, a variable's overrides):
    the definition's id, the environment's slug and the organization's, through the environment."""
    fields = [definition, "environment", "organization"]
    return organization_filterset(model, fields, through="environment", environment="environment__slug")
