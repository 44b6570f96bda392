"""`/api/v1/audit/`: the audit feed for integrations (SIEM exports, compliance reports).

The same rows as the web audit page (`selectors.audit_rows` / `audit_entries`), newest first, with
keyset (cursor) pagination: a page never pays a COUNT over the history tables and a cursor stays
valid while changes are recorded. `export/` streams every matching row as CSV or JSON Lines."""

import base64
import binascii
import csv
import datetime
import io
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.http import StreamingHttpResponse
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_serializer
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from apps.environments.models import Environment
from apps.tenancy.models import Organization

from . import selectors

MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 50
EXPORT_CHUNK = 500
EXPORT_FORMATS = ("csv", "jsonl")
CSV_COLUMNS = ("history_id", "model", "object_id", "when", "who", "action", "what", "name", "reason",
               "organization", "environment", "changes")  # fmt: skip


class AuditQuerySerializer(serializers.Serializer):
    """The feed's query parameters. Unknown parameters are refused, as everywhere in the API."""

    model = serializers.ChoiceField(choices=selectors.AUDIT_MODEL_CHOICES, required=False, help_text="app.Model")
    object_id = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    organization = serializers.SlugField(max_length=50, required=False, help_text="Organization slug.")
    environment = serializers.IntegerField(min_value=1, max_value=2**63 - 1, required=False)
    user = serializers.CharField(max_length=150, required=False, help_text="Username of who made the change.")
    since = serializers.DateTimeField(required=False, help_text="Changes at or after this instant.")
    until = serializers.DateTimeField(required=False, help_text="Changes before this instant.")
    cursor = serializers.CharField(max_length=200, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=MAX_PAGE_SIZE, required=False)

    def __init__(self, *args, allowed=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.allowed = set(allowed) | set(self.fields)

    def to_internal_value(self, data):
        unknown = sorted(name for name in data if name not in self.allowed)
        if unknown:
            raise serializers.ValidationError({name: ["Unknown parameter."] for name in unknown})
        return super().to_internal_value({name: data.get(name) for name in data if name in self.fields})

    def validate(self, attrs):
        user = self.context["request"].user
        if attrs.get("object_id") is not None and not attrs.get("model"):
            raise serializers.ValidationError({"object_id": ["Give `model` with `object_id`."]})
        if "organization" in attrs:
            attrs["organization"] = Organization.objects.restrict(user).filter(slug=attrs["organization"]).first()
            if attrs["organization"] is None:
                raise serializers.ValidationError({"organization": ["No such organization."]})
        if "environment" in attrs:
            attrs["environment"] = Environment.objects.restrict(user).filter(pk=attrs["environment"]).first()
            if attrs["environment"] is None:
                raise serializers.ValidationError({"environment": ["No such environment."]})
        if "cursor" in attrs:
            attrs["before"] = decode_cursor(attrs.pop("cursor"))
        return attrs


def encode_cursor(position: selectors.Position) -> str:
    raw = json.dumps([position.when.isoformat(), position.model_key, position.history_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(value: str) -> selectors.Position:
    invalid = serializers.ValidationError({"cursor": ["Invalid cursor: use the `next` link of a page."]})
    try:
        when, model_key, history_id = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        moment = parse_datetime(when)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise invalid from None
    valid = (
        moment is not None
        and moment.tzinfo is not None
        and model_key in selectors.AUDITED_BY_KEY
        and isinstance(history_id, int)
        and not isinstance(history_id, bool)
        and 0 < history_id < 2**63
    )
    if not valid or moment is None:
        raise invalid
    return selectors.Position(moment, model_key, history_id)


class AuditChangeSerializer(serializers.Serializer):
    field = serializers.CharField()
    before = serializers.CharField()
    after = serializers.CharField()


class AuditEntrySerializer(serializers.Serializer):
    history_id = serializers.IntegerField()
    model = serializers.CharField(help_text="app.Model")
    object_id = serializers.IntegerField()
    when = serializers.DateTimeField()
    who = serializers.CharField(help_text="Username, or `system`.")
    action = serializers.ChoiceField(choices=["created", "changed", "deleted"])
    what = serializers.CharField()
    name = serializers.CharField()
    reason = serializers.CharField()
    organization = serializers.CharField(allow_null=True)
    environment = serializers.SerializerMethodField()
    changes = AuditChangeSerializer(many=True)

    def get_environment(self, entry) -> str | None:
        environment = entry["environment"]
        return environment.slug if environment is not None else None


@extend_schema_serializer(many=False)  # a page object, not a list, although the action is `list`
class AuditPageSerializer(serializers.Serializer):
    next = serializers.URLField(allow_null=True, help_text="The next page (its `cursor`), or null on the last.")
    results = AuditEntrySerializer(many=True)


def _page(user, filters: dict, size: int) -> tuple[list[dict], selectors.Position | None]:
    rows = list(selectors.audit_rows(user, filters)[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    return selectors.audit_entries(rows), (selectors.position_of(rows[-1]) if more else None)


FILTER_PARAMETERS = [
    OpenApiParameter("model", OpenApiTypes.STR, enum=[key for key, _ in selectors.AUDIT_MODEL_CHOICES]),
    OpenApiParameter("object_id", OpenApiTypes.INT, description="With `model`: one object's changes."),
    OpenApiParameter("organization", OpenApiTypes.STR, description="Organization slug."),
    OpenApiParameter("environment", OpenApiTypes.INT, description="Environment id."),
    OpenApiParameter("user", OpenApiTypes.STR, description="Username of who made the change."),
    OpenApiParameter("since", OpenApiTypes.DATETIME, description="At or after this instant."),
    OpenApiParameter("until", OpenApiTypes.DATETIME, description="Before this instant."),
]


class AuditViewSet(viewsets.GenericViewSet):
    """Who changed what, when, in which environment, with the fields before → after, across every
    audited model; only what the caller may see, secrets never. Newest first, cursor-paginated."""

    serializer_class = AuditEntrySerializer
    pagination_class = None
    filter_backends = []

    def _filters(self, *, allowed=()) -> dict:
        query = AuditQuerySerializer(
            data=self.request.query_params, allowed=allowed, context=self.get_serializer_context()
        )
        query.is_valid(raise_exception=True)
        return dict(query.validated_data)

    @extend_schema(
        parameters=[
            *FILTER_PARAMETERS,
            OpenApiParameter("cursor", OpenApiTypes.STR, description="The `next` cursor of the previous page."),
            OpenApiParameter("page_size", OpenApiTypes.INT, description=f"1 to {MAX_PAGE_SIZE} (default 50)."),
        ],
        responses=AuditPageSerializer,
    )
    def list(self, request):
        filters = self._filters(allowed=("format",))
        size = filters.pop("page_size", DEFAULT_PAGE_SIZE)
        entries, last = _page(request.user, filters, size)
        next_url = None
        if last is not None:
            query = request.query_params.copy()
            query["cursor"] = encode_cursor(last)
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"next": next_url, "results": AuditEntrySerializer(entries, many=True).data})

    @extend_schema(
        parameters=[
            *FILTER_PARAMETERS,
            OpenApiParameter("format", OpenApiTypes.STR, enum=[*EXPORT_FORMATS], required=True),
        ],
        responses={(200, "text/csv"): OpenApiTypes.STR, (200, "application/x-ndjson"): OpenApiTypes.STR},
    )
    @action(detail=False, methods=["get"], url_path="export")
    def export(self, request):
        """Every matching change, streamed as CSV or JSON Lines (one object a line), newest first."""
        kind = request.query_params.get("format")
        if kind not in EXPORT_FORMATS:
            raise serializers.ValidationError({"format": [f"Give one of: {', '.join(EXPORT_FORMATS)}."]})
        filters = self._filters(allowed=("format",))
        filters.pop("page_size", None)
        lines = _csv_lines(request.user, filters) if kind == "csv" else _jsonl_lines(request.user, filters)
        content_type = "text/csv; charset=utf-8" if kind == "csv" else "application/x-ndjson"
        response = StreamingHttpResponse(lines, content_type=content_type)
        stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
        response["Content-Disposition"] = f'attachment; filename="audit-{stamp}.{kind}"'
        return response

    # `?format=csv|jsonl` chooses the export, not one of DRF's renderers (for any method, so that an
    # undeclared method still answers 405 rather than a renderer's 404).
    def perform_content_negotiation(self, request, force=False):
        if request.query_params.get("format") in EXPORT_FORMATS or getattr(self, "action", None) == "export":
            force = True
        return super().perform_content_negotiation(request, force)


def _all_entries(user, filters: dict):
    """Every matching entry, fetched a chunk at a time through the same keyset the pages use."""
    while True:
        entries, last = _page(user, filters, EXPORT_CHUNK)
        yield from AuditEntrySerializer(entries, many=True).data
        if last is None:
            return
        filters = {**filters, "before": last}


def _jsonl_lines(user, filters: dict):
    for entry in _all_entries(user, filters):
        yield json.dumps(entry, cls=DjangoJSONEncoder, ensure_ascii=False) + "\n"


def _csv_lines(user, filters: dict):
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def flush() -> str:
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text

    writer.writerow(CSV_COLUMNS)
    yield flush()
    for entry in _all_entries(user, filters):
        row = {**entry, "changes": json.dumps(entry["changes"], ensure_ascii=False)}
        writer.writerow([_csv_safe(row[column]) for column in CSV_COLUMNS])
        yield flush()


def _csv_safe(value):
    """Spreadsheet formula injection: a cell starting with = + - @ is read as a formula by Excel."""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value
    return "" if value is None else value
