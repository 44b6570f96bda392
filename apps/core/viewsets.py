"""The service-backed viewset every configuration resource uses, the services it writes through, and
the one serializer field for a reference to a row of the caller's organization.

A viewset declares its model's output serializer, the input serializers, the access layer's list for
the caller (`visible`, a selector that applies organization scoping and visibility) and the services
it writes through (`writes`, a `ServiceFamily`); create/update/destroy call those services, so
business rules stay in services and a `DomainError` they raise reaches apps.core.api_errors, which
renders the shared error shape."""

import functools
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from django.core.validators import RegexValidator
from django.db import transaction
from django_filters.rest_framework import FilterSet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from .api import ETagMixin
from .errors import field_error
from .filtersets import environment_row_filterset


class OrganizationRelatedField(serializers.CharField):
    """A row of one organization named by `lookup` (an environment's slug, a secret's name), checked
    against the rows the caller may see when `action` is given (`Model.objects.restrict(user, action)`).

    The organization is the one the request writes in, known only once the body is valid (a sibling
    field's row on create) or the object is locked (on update): `ServiceViewSet` calls
    `resolve_references` at that point, so a stale If-Match or an invisible object is answered first.
    A name not found is a 400 naming the field. In a ListField (as its child), the list resolves
    at once; `missing_many` is the message for names not found there (default: the first one's)."""

    def __init__(
        self,
        model,
        *,
        lookup: str = "slug",
        action: str | None = None,
        missing: str = "No environment '{value}' in this organization.",
        missing_many: str | None = None,
        slug: bool = False,
        related: tuple[str, ...] = (),
        **kwargs,
    ):
        self.model, self.lookup, self.action, self.related = model, lookup, action, related
        self.missing, self.missing_many = missing, missing_many
        super().__init__(**kwargs)
        if slug:  # SlugField's own pattern check and message (its other validators are CharField's, here already)
            self.validators.extend(v for v in serializers.SlugField().validators if isinstance(v, RegexValidator))

    def candidates(self, organization, user):
        manager = self.model._default_manager
        rows = manager.restrict(user, self.action) if self.action else manager.all()
        rows = rows.in_organization(organization)
        return rows.select_related(*self.related) if self.related else rows

    def resolve(self, value, organization, user, field: str):
        if value is None:
            return None
        row = self.candidates(organization, user).filter(**{self.lookup: value}).first()
        if row is None:
            raise field_error(field, self.missing.format(value=value))
        return row

    def resolve_many(self, values, organization, user, field: str) -> list:
        names = list(values)
        found = {
            getattr(row, self.lookup): row
            for row in self.candidates(organization, user).filter(**{f"{self.lookup}__in": names})
        }
        missing = [name for name in names if name not in found]
        if missing:
            message = self.missing_many.format(values=", ".join(missing)) if self.missing_many else None
            raise field_error(field, message or self.missing.format(value=missing[0]))
        return [found[name] for name in names]


def resolve_references(serializer: serializers.Serializer, fields: dict, organization: Callable[[], Any], user) -> dict:
    """`fields` (the serializer's validated data) with every OrganizationRelatedField's names
    replaced by the rows they name in `organization()` (asked only when a reference was given);
    a 400 naming the field for one not found."""
    for name, field in serializer.fields.items():
        key = field.source or name
        if key not in fields:
            continue
        if isinstance(field, OrganizationRelatedField):
            fields[key] = field.resolve(fields[key], organization(), user, name)
        elif isinstance(field, serializers.ListField) and isinstance(field.child, OrganizationRelatedField):
            fields[key] = field.child.resolve_many(fields[key], organization(), user, name)
    return fields


@dataclass(frozen=True)
class ServiceFamily:
    """The services a ServiceViewSet writes through, each called with `actor=`; update and delete get
    the object as the keyword `instance` (`role=`, `variable=`). `set` creates or replaces a row that
    exists once per (definition, environment) (a `PerEnvironmentRowViewSet`'s). None: the viewset
    writes that way itself (its `create_object` / `update_object`) or does not offer it."""

    instance: str
    create: Callable[..., Any] | None = None
    update: Callable[..., Any] | None = None
    delete: Callable[..., Any] | None = None
    set: Callable[..., Any] | None = None

    def service(self, verb: str) -> Callable[..., Any]:
        service = getattr(self, verb)
        if service is None:
            raise NotImplementedError(f"No {verb} service for '{self.instance}': declare it or override {verb}_object.")
        return service


def service_family(module: ModuleType, name: str, *verbs: str, instance: str = "") -> ServiceFamily:
    """The services of one resource named after it: `module`'s `<name>_<verb>` for each of `verbs`
    (default create, update and delete; "set", "delete" for a per-environment row), the object passed
    as `instance` (default `name`). A misspelt name fails at import."""
    services = {verb: getattr(module, f"{name}_{verb}") for verb in verbs or ("create", "update", "delete")}
    return ServiceFamily(instance or name, **services)


def queued_action(serializer_class: type[serializers.Serializer]):
    """A detail POST that queues work on the object (a connection test, a repository sync) and answers
    202 Accepted with the row to poll: the decorated method returns that row."""

    def decorate(method):
        @functools.wraps(method)
        def view(self, request, pk=None):
            return Response(serializer_class(method(self, request, pk)).data, status=status.HTTP_202_ACCEPTED)

        answered = action(detail=True, methods=["post"])(view)
        return extend_schema(request=None, responses={202: serializer_class})(answered)

    return decorate


def _through(obj, path: str):
    for name in filter(None, path.split(".")):
        obj = getattr(obj, name)
    return obj


class ServiceViewSet(viewsets.ModelViewSet):
    """A resource written through the app's services: list and detail from the access layer, and
    create/partial update/delete calling the services (no PUT).

    Declare `visible` (the selector), `serializer_class` (the output ModelSerializer; its model is
    the resource's), `create_serializer_class` and `update_serializer_class` (input), the services as
    `writes` (`service_family(services, "variable")`, or a `ServiceFamily` naming each: called with
    `actor=`, the object as its `instance` keyword and the input), and the `organization_of(obj)` /
    `input_organization(fields)` that named references resolve in. Override `create_input` /
    `update_input` to prepare other input, `create_object` / `update_object` for a service with
    another signature; set `organization_through` where a row reaches its organization through a
    relation. The actions in `reread` ("create",
    "partial_update") answer with the row as the list reads it (annotations, prefetching)."""

    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    visible: Callable[..., Any]  # selector(user) -> queryset
    create_serializer_class: type[serializers.Serializer] | None = None
    update_serializer_class: type[serializers.Serializer] | None = None
    writes: ServiceFamily
    reread: tuple[str, ...] = ()
    organization_through = ""  # the relations, dotted, from a row to what holds its `organization`

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.serializer_class is not None and "queryset" not in cls.__dict__:
            # What the router and the schema read the model from; requests use get_queryset.
            model = cls.serializer_class.Meta.model  # type: ignore[attr-defined]  # a ModelSerializer; BaseSerializer has no Meta
            cls.queryset = model._default_manager.none()
        schemas = {}
        if cls.create_serializer_class is not None and "create" not in cls.__dict__:
            schemas["create"] = extend_schema(
                request=cls.create_serializer_class, responses={201: cls.serializer_class}
            )
        if cls.update_serializer_class is not None and "partial_update" not in cls.__dict__:
            schemas["partial_update"] = extend_schema(
                request=cls.update_serializer_class, responses=cls.serializer_class
            )
        extend_schema_view(**schemas)(cls)

    def get_queryset(self):
        return type(self).visible(self.request.user)

    # --- the hooks a resource may override ---------------------------------------------------------

    def organization_of(self, obj):
        """The organization of the row being written: `organization`, through `organization_through`."""
        return _through(obj, self.organization_through).organization

    def input_organization(self, fields: dict):
        """The organization a create writes in: the input's `organization`, or that of the row the
        input names first in `organization_through` (a binding's role, a repository's pipeline)."""
        if not self.organization_through:
            return fields.get("organization")
        first, _, rest = self.organization_through.partition(".")
        return _through(fields[first], rest).organization

    def create_input(self, serializer, fields: dict) -> dict:
        """The create service's input: references resolved in `input_organization`."""
        return resolve_references(serializer, fields, lambda: self.input_organization(fields), self.request.user)

    def update_input(self, serializer, obj, fields: dict) -> dict:
        """The update service's input (the object is locked): references resolved in its organization."""
        return resolve_references(serializer, fields, lambda: self.organization_of(obj), self.request.user)

    def create_object(self, fields: dict):
        return self.writes.service("create")(actor=self.request.user, **fields)

    def update_object(self, obj, fields: dict):
        return self.writes.service("update")(actor=self.request.user, **{self.writes.instance: obj}, **fields)

    def delete_object(self, obj) -> None:
        self.writes.service("delete")(actor=self.request.user, **{self.writes.instance: obj})

    # --- the actions -------------------------------------------------------------------------------

    def input_serializer(self, serializer_class, obj=None) -> serializers.Serializer:
        """The input serializer of a create (`obj` None) or an update of `obj`."""
        return serializer_class(data=self.request.data, context=self.get_serializer_context())

    def validated_input(self, serializer_class, obj=None) -> tuple[serializers.Serializer, dict]:
        data = self.input_serializer(serializer_class, obj)
        data.is_valid(raise_exception=True)
        return data, dict(data.validated_data)

    def answer(self, obj):
        if self.action in self.reread:
            obj = self.get_queryset().get(pk=obj.pk)
        return obj, self.get_serializer(obj).data

    def create(self, request, *args, **kwargs):
        assert self.create_serializer_class is not None
        data, fields = self.validated_input(self.create_serializer_class)
        obj, body = self.answer(self.create_object(self.create_input(data, fields)))
        return self.created(Response(body, status=status.HTTP_201_CREATED), obj)

    def created(self, response, obj):
        return response

    def partial_update(self, request, *args, **kwargs):
        assert self.update_serializer_class is not None
        obj = self.get_object()
        data, fields = self.validated_input(self.update_serializer_class, obj)
        obj, body = self.answer(self.update_object(obj, self.update_input(data, obj, fields)))
        return Response(body)

    def destroy(self, request, *args, **kwargs):
        self.delete_object(self.get_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class ETagServiceViewSet(ETagMixin, ServiceViewSet):
    """A configuration resource: a ServiceViewSet with an ETag on detail responses and If-Match on
    writes, which validate the input first and then lock the row (`etag_on_create`: the 201 carries
    the new row's ETag too)."""

    etag_on_create = False

    def created(self, response, obj):
        return self.with_etag(response, obj) if self.etag_on_create else response

    def partial_update(self, request, *args, **kwargs):
        assert self.update_serializer_class is not None
        data, fields = self.validated_input(self.update_serializer_class)
        with transaction.atomic():
            obj = self.locked_object()
            obj = self.update_object(obj, self.update_input(data, obj, fields))
        obj, body = self.answer(obj)
        return self.with_etag(Response(body), obj)

    def destroy(self, request, *args, **kwargs):
        with transaction.atomic():
            self.delete_object(self.locked_object())
        return Response(status=status.HTTP_204_NO_CONTENT)


class PerEnvironmentRowViewSet(ETagServiceViewSet):
    """A definition's rows, one per environment (a role's bindings, a variable's overrides), created
    and replaced by one service, `writes.set(actor=, <definition>=, environment=, **values)`: the
    definition is the relation named by `organization_through`, `row_values` the values' names (None
    when a create does not give one). A partial update keeps the row's values not given; override
    `updated_values` for another rule. Lists filter by the definition, the environment and the
    organization (`environment_row_filterset`) unless `filterset_class` says otherwise, and order by
    when rows were written."""

    row_values: tuple[str, ...]
    reread = ("partial_update",)
    ordering_fields = ["created_at", "updated_at"]
    filterset_class: type[FilterSet] | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.serializer_class is not None and cls.filterset_class is None:
            model = cls.serializer_class.Meta.model  # type: ignore[attr-defined]  # a ModelSerializer
            cls.filterset_class = environment_row_filterset(model, cls.organization_through)

    def create_object(self, fields: dict):
        unset = dict.fromkeys(self.row_values)
        return self.writes.service("set")(actor=self.request.user, **{**unset, **fields})

    def updated_values(self, row, fields: dict) -> dict:
        return {**{name: getattr(row, name) for name in self.row_values}, **fields}

    def update_object(self, row, fields: dict):
        definition = self.organization_through
        return self.writes.service("set")(
            actor=self.request.user,
            **{definition: getattr(row, definition)},
            environment=row.environment,
            **self.updated_values(row, fields),
        )
