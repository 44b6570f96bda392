"""The one declaration of an API list's filters over an organization's rows: `organization` by the
organization's slug, relations by their slug or username, the rest as django-filter makes them."""

from collections.abc import Sequence

from django.db.models import Model
from django_filters import rest_framework as filters
from django_filters.filterset import filterset_factory


def organization_filterset(
    model: type[Model], fields: Sequence[str], *, organization: str = "organization", **declared: str | filters.Filter
) -> type[filters.FilterSet]:
    """A FilterSet of `model` on `fields` (their order is the form's): `organization` an organization's
    slug through `organization`, the relation path from a row to it (`"project__organization"`); each
    of `declared` a relation's slug path (`environment="environment__slug"`) or a filter of its own;
    the other fields django-filter's (a model field's choices, a foreign key's id)."""
    own = {name: filters.CharFilter(field_name=f) if isinstance(f, str) else f for name, f in declared.items()}
    base = type(
        "OrganizationFilterSet",
        (filters.FilterSet,),
        {
            "organization": filters.CharFilter(field_name=f"{organization}__slug"),
            **own,
        },
    )
    return filterset_factory(model, base, list(fields))
