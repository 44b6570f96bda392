"""API plumbing shared by every app: pagination, scope checks, strict input (errors: api_errors)."""

import re
from typing import TYPE_CHECKING, Any

from django import forms
from django_filters import rest_framework as filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema_field
from rest_framework import exceptions, pagination, permissions, serializers
from rest_framework.filters import OrderingFilter, SearchFilter

from . import params
from .errors import ValidationFailed
from .scopes import SCOPES, scopes_grant  # noqa: F401  (re-exported for API modules)

ADMIN_WRITES = {"create": "admin", "partial_update": "admin", "destroy": "admin"}
"""`required_scopes` of a resource only owners and admins change: an API key writes it with the admin scope."""

_WHOLE_NUMBER = re.compile(r"^[0-9]{1,9}\Z")
_MAX_PAGE_SIZE = 500


class _StrictPageSize:
    """A `page_size` outside 1..`max_page_size` is a 400 naming the parameter (DRF would silently
    fall back to the default size)."""

    # The pagination base classes declare these Optional; here both are always set.
    page_size: int | None  # the base class's default
    page_size_query_param: str | None = "page_size"
    max_page_size: int | None = _MAX_PAGE_SIZE

    def get_page_size(self, request):
        name, limit = self.page_size_query_param or "page_size", self.max_page_size or _MAX_PAGE_SIZE
        raw = request.query_params.get(name)
        if raw is None:
            return self.page_size
        size = int(raw) if _WHOLE_NUMBER.match(raw) else 0
        if not 1 <= size <= limit:
            message = f"Give a whole number from 1 to {limit}."
            raise exceptions.ValidationError({name: [message]})
        return size

    def _bound_schema(self, parameters):
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["minimum"] = 1
                parameter["schema"]["maximum"] = self.max_page_size
        return parameters


class Pagination(_StrictPageSize, pagination.PageNumberPagination):
    """Page-number pagination with validated parameters, for lists a person pages through and that
    stay small: a `page` that is not a whole number from 1 is a 400 naming the parameter (DRF would
    silently fall back to the first page), as is a bad `page_size`."""

    def get_page_number(self, request, paginator):
        raw = request.query_params.get(self.page_query_param)
        if raw is None or raw in self.last_page_strings:
            return super().get_page_number(request, paginator)
        if not _WHOLE_NUMBER.match(raw) or int(raw) < 1:
            raise exceptions.ValidationError({self.page_query_param: ["Give a page number from 1."]})
        return int(raw)  # past the last page: DRF's 404

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["schema"]["maximum"] = self.max_page_size
        return parameters


class CursorPagination(_StrictPageSize, pagination.CursorPagination):
    """Cursor pagination for the large, append-mostly lists (runs, promotions, notifications): no
    page pays a COUNT(*) over the table, and rows added meanwhile never shift a page. Follow the
    `next`/`previous` links; a `cursor` that is not one of them is a 400 naming `cursor` (DRF would
    answer 404). Ordering follows `?ordering=` where the view allows it, newest first otherwise."""

    ordering = ("-created_at", "-id")
    page_size = 50

    def decode_cursor(self, request):
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            message = "Give the cursor of a previous page's next or previous link."
            raise exceptions.ValidationError({self.cursor_query_param: [message]}) from None

    def get_ordering(self, request, queryset, view):
        ordering = super().get_ordering(request, queryset, view)
        field = queryset.model._meta.get_field(ordering[0].lstrip("-").split("__")[0])
        if field.null or field.is_relation:  # the cursor would carry "None" as a position
            raise exceptions.ValidationError({"ordering": [f"This list cannot be ordered by '{field.name}'."]})
        return ordering

    def get_schema_operation_parameters(self, view):
        return self._bound_schema(super().get_schema_operation_parameters(view))


class IsAuthenticatedWithScope(permissions.BasePermission):
    """Requires an authenticated user; for API-key requests, the key's scopes must include the
    scope the view asks for (`required_scopes` by action, else read for safe methods and write
    for the rest)."""

    message = "Authentication credentials were not provided or are not valid."

    def has_permission(self, request, view):
        if not (request.user and request.user.is_authenticated):
            return False
        key = request.auth
        if key is None or not hasattr(key, "scopes"):
            return True
        required = required_scope(request, view)
        if not scopes_grant(key.scopes, required):
            raise exceptions.PermissionDenied(f"This API key lacks the '{required}' scope.")
        return True


def required_scope(request, view) -> str:
    per_action = getattr(view, "required_scopes", {}) or {}
    action = getattr(view, "action", None)
    if action in per_action:
        return per_action[action]
    return "read" if request.method in permissions.SAFE_METHODS else "write"


def contains_nul(value) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(contains_nul(k) or contains_nul(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(v) for v in value)
    return False


def wrong_json_type(field, value) -> str | None:
    """The message when `value` has the wrong JSON type for `field`, else None.

    DRF coerces on input (`"5"` for an integer, `0` for a string, `"yes"` for a boolean); the API
    takes JSON as typed, so the schema it publishes is the contract it enforces."""
    if value is None:
        return None  # allow_null is the field's own business
    if isinstance(field, serializers.BooleanField):
        return None if isinstance(value, bool) else "Must be true or false."
    if isinstance(field, serializers.PrimaryKeyRelatedField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "Must be an integer id."
    if isinstance(field, serializers.ManyRelatedField) and isinstance(
        field.child_relation, serializers.PrimaryKeyRelatedField
    ):
        ok = isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        return None if ok else "Must be a list of integer ids."
    if isinstance(field, serializers.IntegerField):
        return None if isinstance(value, int) and not isinstance(value, bool) else "Must be an integer."
    if isinstance(field, serializers.FloatField):
        return None if isinstance(value, int | float) and not isinstance(value, bool) else "Must be a number."
    if isinstance(field, serializers.CharField):
        if not isinstance(value, str):
            return "Must be a string."
        if field.max_length is not None and len(value) > field.max_length:
            # DRF measures after trimming whitespace; the published maxLength is about what was sent.
            return f"Ensure this field has no more than {field.max_length} characters."
        return None
    if isinstance(field, serializers.ChoiceField) and not isinstance(field, serializers.MultipleChoiceField):
        if all(isinstance(choice, str) for choice in field.choices):
            return None if isinstance(value, str) else "Must be a string."
        return None
    if isinstance(field, serializers.ListField):
        if not isinstance(value, list):
            return "Must be a list."
        for item in value:
            message = wrong_json_type(field.child, item)
            if message:
                return f"Every item: {message[0].lower()}{message[1:]}"
    return None


class VisibleRelatedField(serializers.PrimaryKeyRelatedField):
    """A related id among the rows the caller may see, `Model.objects.restrict(user, action)`, and,
    when the serializer's context has an `organization`, among that organization's rows only.

    An id the caller may not see (another tenant's, or one their rights do not reach) gets DRF's
    message for a missing id, word for word, so the API cannot be used to probe which ids exist."""

    def __init__(self, model, action=None, **kwargs):
        self.model = model
        self.action = action
        if not kwargs.get("read_only"):
            kwargs.setdefault("queryset", model._default_manager.all())
        super().__init__(**kwargs)

    def get_queryset(self):
        request = self.context.get("request")
        if request is None:  # no caller, no rows: a serializer built without its request fails closed
            return self.model._default_manager.none()
        queryset = self.model._default_manager.restrict(request.user, self.action)
        if "organization" not in self.context:
            return queryset
        return queryset.in_organization(self.context["organization"])  # None (an unknown organization): no rows


class StrictSerializer(serializers.Serializer):
    """Refuses fields the serializer does not know (a typo must not be silently ignored), values
    of the wrong JSON type (no silent coercion) and NUL characters anywhere in JSON values."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            writable = {name for name, field in self.fields.items() if not field.read_only}
            unknown = sorted(str(k) for k in data if k not in writable)
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            bad = sorted(k for k, v in data.items() if contains_nul(v))
            if bad:
                raise serializers.ValidationError({name: ["NUL characters are not allowed."] for name in bad})
            wrong = {name: wrong_json_type(self.fields[name], value) for name, value in data.items()}
            mistyped = {name: [message] for name, message in wrong.items() if message}
            if mistyped:
                raise serializers.ValidationError(mistyped)
        return super().to_internal_value(data)


class StrictModelSerializer(StrictSerializer, serializers.ModelSerializer):
    """ModelSerializer with StrictSerializer's checks."""


def query_input(serializer_class, query_params) -> dict:
    """The validated data of a StrictSerializer describing a custom action's query parameters. Integer
    fields are read with `apps.core.params` (ASCII digits, within the field's and the database's range);
    every other value is a string of at most the published length."""
    fields = serializer_class().fields
    data: dict[str, Any] = {}
    for name, raw in query_params.items():
        field = fields.get(name)
        if isinstance(field, serializers.IntegerField) and raw != "":
            data[name] = params.parse_whole_number(raw, name, **params.bounds_of(field))
        else:
            data[name] = params.parse_text(raw, name)
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def etag_for(obj) -> str:
    """A strong validator for a configuration row: changes whenever the row is saved."""
    import hashlib

    stamp = getattr(obj, "updated_at", None)
    raw = f"{obj._meta.label}:{obj.pk}:{stamp.isoformat() if stamp else ''}"
    return '"' + hashlib.sha256(raw.encode()).hexdigest()[:32] + '"'


if TYPE_CHECKING:
    from rest_framework.generics import GenericAPIView
    from rest_framework.mixins import RetrieveModelMixin

    class _DetailView(RetrieveModelMixin, GenericAPIView): ...
else:
    _DetailView = object


class ETagMixin(_DetailView):
    """ETag on detail responses of configuration resources, and If-Match on writes: a stale
    If-Match gets 412, so concurrent editors cannot overwrite each other silently. Views call
    `locked_object()` inside a transaction before writing."""

    def retrieve(self, request, *args, **kwargs):
        response = super().retrieve(request, *args, **kwargs)
        response["ETag"] = etag_for(self.get_object())
        return response

    def locked_object(self):
        """The object, row-locked for the surrounding transaction, after the If-Match check."""
        from .errors import PreconditionFailed

        obj = self.get_object()
        obj = type(obj).objects.select_for_update().get(pk=obj.pk)
        expected = self.request.headers.get("If-Match")
        if expected and expected.strip() != "*" and etag_for(obj) not in [e.strip() for e in expected.split(",")]:
            raise PreconditionFailed(
                "The resource changed since you read it (If-Match does not match its ETag); read it again.",
                fields={"If-Match": ["Stale ETag."]},
            )
        return obj

    def with_etag(self, response, obj):
        response["ETag"] = etag_for(obj)
        return response


ID_SCHEMA = {"type": "integer", "minimum": 1, "maximum": params.DB_INT_MAX}


@extend_schema_field(ID_SCHEMA)
class IdFilter(filters.NumberFilter):
    """An id: a whole number from 1 within the database's integer range. django-filter's NumberFilter
    takes any decimal, and one too large for the database overflows in the driver (a 500)."""

    field_class = forms.IntegerField

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("min_value", 1)
        kwargs.setdefault("max_value", params.DB_INT_MAX)
        super().__init__(*args, **kwargs)


class StrictFilterBackend(DjangoFilterBackend):
    """django-filter, minus its silent fallbacks and its crashes: `?active=maybe` (a boolean it cannot
    read) and `?kind=` (an empty value for a choice, boolean, number or date) are 400s naming the
    parameter instead of meaning "no filter"; values the database or Python cannot take (ids past the
    integer range, impossible offsets, years before 1) are 400s before any filter cleans them. The
    published parameter types are what the API enforces."""

    def filter_queryset(self, request, queryset, view):
        filterset = self.get_filterset(request, queryset, view)
        if filterset is None:
            return queryset
        errors = unsafe_parameters(filterset.form)
        if not errors:
            errors = {} if filterset.is_valid() else dict(filterset.errors)
            for name, messages in unreadable_parameters(filterset.form).items():
                errors.setdefault(name, messages)
        if errors:
            raise exceptions.ValidationError({name: [str(m) for m in messages] for name, messages in errors.items()})
        return filterset.qs


def _parser_for(field):
    """The `apps.core.params` parser that checks a raw value for this form field, or None."""
    if isinstance(field, forms.ModelChoiceField | forms.ModelMultipleChoiceField):
        return params.parse_id if field.to_field_name is None else None
    if isinstance(field, forms.DecimalField):  # before IntegerField: DecimalField subclasses it
        return params.parse_decimal
    if isinstance(field, forms.IntegerField):
        return lambda raw, name: params.parse_whole_number(raw, name, **params.bounds_of(field))
    if isinstance(field, forms.DateTimeField):
        return lambda raw, name: params.parse_moment(raw, name, require_timezone=False)
    return None


def _given(form):
    """(parameter, form field, its values) for every filter parameter the request gives."""
    for name, field in form.fields.items():
        key = form.add_prefix(name)
        if key in form.data:
            values = form.data.getlist(key) if hasattr(form.data, "getlist") else [form.data.get(key)]
            yield key, field, values


def unsafe_parameters(form) -> dict[str, list[str]]:
    """Filter values that would crash a filter or the database rather than fail validation: {name: [message]}."""
    errors: dict[str, list[str]] = {}
    for key, field, values in _given(form):
        parse = _parser_for(field)
        for value in values:
            if value in (None, ""):
                continue  # unreadable_parameters answers empty values
            try:
                params.parse_text(value, key)
                if parse is not None:
                    parse(value, key)
            except ValidationFailed as error:
                errors[key] = error.fields[key]
    return errors


class StrictSearchFilter(SearchFilter):
    """SearchFilter with the length cap every string query parameter publishes."""

    def get_search_terms(self, request):
        raw = request.query_params.get(self.search_param, "")
        try:
            params.parse_text(raw, self.search_param)
        except ValidationFailed as error:
            raise exceptions.ValidationError(error.fields) from None
        return super().get_search_terms(request)


class StrictOrderingFilter(OrderingFilter):
    """OrderingFilter with the same length cap (the schema publishes it for `ordering` too)."""

    def get_ordering(self, request, queryset, view):
        raw = request.query_params.get(self.ordering_param)
        if raw is not None:
            try:
                params.parse_text(raw, self.ordering_param)
            except ValidationFailed as error:
                raise exceptions.ValidationError(error.fields) from None
        return super().get_ordering(request, queryset, view)


def document_query_parameters(result, generator, request, public):
    """drf-spectacular postprocessing hook: every free-text query parameter publishes the length cap
    that `apps.core.params` enforces, so schema and code agree."""
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for parameter in operation.get("parameters", []):
                schema = parameter.get("schema", {})
                if parameter.get("in") == "query" and schema.get("type") == "string" and "enum" not in schema:
                    schema.setdefault("maxLength", params.MAX_QUERY_VALUE_LENGTH)
    return result


_BOOLEAN_SPELLINGS = {"true", "false", "1", "0"}


def unreadable_parameters(form) -> dict[str, list[str]]:
    """Query parameters that django-filter would quietly ignore: {name: [message]}."""
    errors: dict[str, list[str]] = {}
    for key, field, values in _given(form):
        for value in values:
            if value == "" and not isinstance(field, forms.CharField):
                errors[key] = ["Give a value or leave the parameter out."]
            elif isinstance(field, forms.NullBooleanField) and str(value).lower() not in _BOOLEAN_SPELLINGS:
                errors[key] = ["Give true or false."]
    return errors
