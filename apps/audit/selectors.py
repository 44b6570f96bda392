"""The audit feed: every audited model's history as one newest-first stream, filtered by what the
caller may see (environment-scoped rows by their environment's permission, organization-scoped rows
by membership or administration), with each change's fields before -> after. The web audit page
and `/api/v1/audit/` both read it here, so the two cannot disagree.

Secret material never appears: secret columns are excluded from history by the models, and the
columns that could carry key material or blobs are hidden here as well."""

import datetime
from dataclasses import dataclass, field

from django.apps import apps
from django.contrib.auth import get_user_model
from django.db.models import BigIntegerField, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Cast

from apps.environments import permissions as perms
from apps.environments.models import Environment
from apps.tenancy.models import ADMIN_ROLES, Organization
from apps.tenancy.permissions import member_organization_ids, org_role, sees_all

# --- audit feed ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Audited:
    """How to place one audited model's history rows: which environment and organization a row
    belongs to (paths on the historical model), who may see it, and what names it."""

    label: str  # app_label.ModelName
    title: str
    environment: str | None = None  # path to the environment id
    organization: str | None = None  # path to the organization id (default: through the environment)
    codename: str = perms.VIEW  # needed on the environment (environment-scoped rows)
    admins_only: bool = False  # organization-scoped rows only organization owners/admins see
    name_fields: tuple = ("name",)
    related_names: tuple = field(default=())  # (attname, "app.Model", field) resolved in one query each


AUDITED = (
    Audited("tenancy.Organization", "organization", organization="id", name_fields=("name",)),
    Audited(
        "tenancy.Membership",
        "membership",
        organization="organization_id",
        admins_only=True,
        name_fields=("role",),
        related_names=(("user_id", "auth.User", "username"),),
    ),
    Audited("tenancy.ServiceAccount", "service account", organization="organization_id", admins_only=True),
    Audited("tenancy.ApiKey", "API key", organization="organization_id", admins_only=True),
    Audited("notifications.Channel", "notification channel", organization="organization_id", admins_only=True),
    Audited("secrets.Secret", "secret", organization="organization_id", admins_only=True),
    Audited("environments.Environment", "environment", environment="id"),
    Audited(
        "environments.EnvironmentUserObjectPermission",
        "environment permission (user)",
        environment="content_object_id",
        codename=perms.MANAGE,
        name_fields=(),
        related_names=(("user_id", "auth.User", "username"), ("permission_id", "auth.Permission", "codename")),
    ),
    Audited(
        "environments.EnvironmentGroupObjectPermission",
        "environment permission (group)",
        environment="content_object_id",
        codename=perms.MANAGE,
        name_fields=(),
        related_names=(("group_id", "auth.Group", "name"), ("permission_id", "auth.Permission", "codename")),
    ),
    Audited("environments.RuntimePolicy", "runtime policy", environment="environment_id", name_fields=()),
    Audited("environments.FreezeWindow", "freeze window", environment="environment_id", name_fields=("reason",)),
    Audited("pipelines.Project", "project", organization="organization_id"),
    Audited("pipelines.Pipeline", "pipeline", organization="project__organization_id"),
    Audited("variables.Variable", "variable", organization="organization_id"),
    Audited(
        "variables.VariableOverride",
        "variable override",
        environment="environment_id",
        name_fields=(),
        related_names=(("variable_id", "variables.Variable", "name"),),
    ),
    Audited(
        "variables.PersonalOverride",
        "personal override",
        environment="environment_id",
        codename=perms.MANAGE,  # a member's own development value: those who manage the stage see it
        name_fields=(),
        related_names=(("variable_id", "variables.Variable", "name"), ("user_id", "auth.User", "username")),
    ),
    Audited("connections.ConnectionRole", "connection role", organization="organization_id"),
    Audited(
        "connections.ConnectionBinding",
        "connection binding",
        environment="environment_id",
        name_fields=(),
        related_names=(("role_id", "connections.ConnectionRole", "name"),),
    ),
    Audited(
        "runs.Deployment",
        "deployment",
        environment="environment_id",
        name_fields=("note",),
        related_names=(
            ("pipeline_id", "pipelines.Pipeline", "slug"),
            ("version_id", "pipelines.PipelineVersion", "number"),
        ),
    ),
    Audited(
        "runs.Schedule",
        "schedule",
        environment="environment_id",
        name_fields=("cron",),
        related_names=(("pipeline_id", "pipelines.Pipeline", "slug"),),
    ),
    Audited("approvals.ApprovalRule", "approval rule", environment="environment_id"),
    Audited(
        "approvals.PromotionRequest",
        "promotion request",
        environment="target_id",
        name_fields=("state",),
        related_names=(("pipeline_id", "pipelines.Pipeline", "slug"),),
    ),
    Audited(
        "approvals.ApprovalDecision",
        "approval decision",
        environment="request__target_id",
        name_fields=("decision",),
        related_names=(("approver_id", "auth.User", "username"),),
    ),
)
AUDITED_BY_KEY = {spec.label: spec for spec in AUDITED}
AUDIT_MODEL_CHOICES = [(spec.label, spec.title) for spec in AUDITED]

# History columns never shown in a diff: bookkeeping, and anything that could carry key material.
_HIDDEN_COLUMNS = {"history_id", "history_date", "history_change_reason", "history_type", "history_user_id"}
_HIDDEN_COLUMNS |= {"created_at", "updated_at", "ciphertext", "secret_ciphertext", "key_hash", "plan", "resolved"}
_HIDDEN_COLUMNS |= {"plan_document_id", "resolved_document_id"}  # digests of stored documents
VALUE_PREVIEW = 160


def _history_model(spec: Audited):
    return apps.get_model(spec.label).history.model


def _scope(user) -> dict:
    """Environment ids per codename and organization ids the user may see audit rows of (None: all)."""
    if sees_all(user):
        return {"all": True}
    members = member_organization_ids(user)
    return {
        "all": False,
        "members": members,
        "admins": {org_id for org_id in members if org_role(user, org_id) in ADMIN_ROLES},
        "environments": {},
    }


def _environment_ids(user, scope: dict, codename: str) -> list[int]:
    cached = scope["environments"].get(codename)
    if cached is None:
        cached = list(Environment.objects.restrict(user, codename).values_list("pk", flat=True))
        scope["environments"][codename] = cached
    return cached


def _part(user, spec: Audited, scope: dict, filters: dict) -> QuerySet | None:
    """One audited model's history rows as the common columns of the feed."""
    model = _history_model(spec)
    rows = model.objects.order_by()
    nothing = Value(None, output_field=BigIntegerField())
    environment = F(spec.environment) if spec.environment else nothing
    if spec.organization:
        organization_path = spec.organization
    elif spec.environment:
        organization_path = spec.environment.replace("_id", "") + "__organization_id"
    else:
        raise ValueError(f"{spec.label}: an audited model names its environment or its organization.")
    if spec.environment == "id":
        organization_path = "organization_id"
    rows = rows.annotate(
        model_key=Value(spec.label),
        environment_ref=Cast(environment, BigIntegerField()),
        organization_ref=Cast(F(organization_path), BigIntegerField()),
    )
    if not scope["all"]:
        if spec.environment:
            rows = rows.filter(environment_ref__in=_environment_ids(user, scope, spec.codename))
        else:
            orgs = scope["admins"] if spec.admins_only else scope["members"]
            rows = rows.filter(organization_ref__in=orgs)
    if filters.get("environment") or filters.get("environments") is not None:
        if not spec.environment:
            return None
        if filters.get("environment"):
            rows = rows.filter(environment_ref=filters["environment"].pk)
        if filters.get("environments") is not None:
            rows = rows.filter(environment_ref__in=filters["environments"])
    if filters.get("organization"):
        rows = rows.filter(organization_ref=filters["organization"].pk)
    if filters.get("user"):
        rows = rows.filter(history_user__username=filters["user"])
    if filters.get("object_id") is not None:
        rows = rows.filter(id=filters["object_id"])
    for name, on_date, at in (
        ("since", "history_date__date__gte", "history_date__gte"),
        ("until", "history_date__date__lte", "history_date__lt"),
    ):
        value = filters.get(name)
        if value is not None:
            # A date (the web form) bounds whole days; a datetime (the API) is an instant.
            rows = rows.filter(**{at if isinstance(value, datetime.datetime) else on_date: value})
    if filters.get("before") is not None:
        rows = rows.filter(_older_than(spec.label, filters["before"]))
    return rows.values(
        "history_id",
        "history_date",
        "history_type",
        "history_user_id",
        "model_key",
        "environment_ref",
        "organization_ref",
    )


@dataclass(frozen=True)
class Position:
    """Where a page of the feed ended: the feed is ordered by (history_date, model, history_id),
    newest first, a total order, so a page that starts after a position never repeats or skips a
    row however many changes are recorded meanwhile (keyset pagination, no COUNT, no OFFSET)."""

    when: datetime.datetime
    model_key: str
    history_id: int


def _older_than(model_key: str, position: Position) -> Q:
    """Rows of one model that come after `position` in the feed's newest-first order."""
    older = Q(history_date__lt=position.when)
    if model_key < position.model_key:
        return older | Q(history_date=position.when)
    if model_key == position.model_key:
        return older | Q(history_date=position.when, history_id__lt=position.history_id)
    return older


FEED_ORDER = ("-history_date", "-model_key", "-history_id")


def position_of(row: dict) -> Position:
    return Position(row["history_date"], row["model_key"], row["history_id"])


def audit_rows(user, filters: dict) -> QuerySet:
    """Every audited change the user may see, newest first, as one UNION query (paginate it, then
    `audit_entries` the page). Filters: model (or models), object_id, environment (or environments:
    ids), organization, user, since, until (dates or datetimes) and `before` (a Position: the rows
    after a page)."""
    if not user.is_authenticated:
        return _history_model(AUDITED[0]).objects.none().values("history_id")
    scope = _scope(user)
    chosen = list(AUDITED)
    if filters.get("model"):
        chosen = [AUDITED_BY_KEY[filters["model"]]]
    elif filters.get("models"):
        chosen = [AUDITED_BY_KEY[key] for key in filters["models"]]
    parts = [part for spec in chosen if (part := _part(user, spec, scope, filters)) is not None]
    if not parts:
        return _history_model(AUDITED[0]).objects.none().values("history_id")
    first, *rest = parts
    return first.union(*rest, all=True).order_by(*FEED_ORDER) if rest else first.order_by(*FEED_ORDER)


def _preview(value) -> str:
    text = "—" if value is None or value == "" else str(value)
    return text if len(text) <= VALUE_PREVIEW else text[: VALUE_PREVIEW - 1] + "…"


def _changes(record, previous) -> list[dict]:
    """Field by field: what the change did (every set field for a creation)."""
    columns = [
        f.attname for f in record._meta.concrete_fields if f.attname not in _HIDDEN_COLUMNS and f.attname != "id"
    ]
    changes = []
    for column in columns:
        after = getattr(record, column)
        before = getattr(previous, column) if previous is not None else None
        if record.history_type == "-":
            continue
        if previous is None and after in (None, "", [], {}):
            continue
        if previous is not None and before == after:
            continue
        changes.append(
            {"field": column, "before": _preview(before) if previous is not None else "", "after": _preview(after)}
        )
    return changes


def audit_entries(rows: list[dict]) -> list[dict]:
    """Hydrate a page of feed rows: the full history records, the record before each (for the
    diff), names of users, environments and organizations — a few queries per model on the page."""
    by_model: dict[str, list[int]] = {}
    for row in rows:
        by_model.setdefault(row["model_key"], []).append(row["history_id"])
    records, previous, names = {}, {}, {}
    for key, ids in by_model.items():
        spec = AUDITED_BY_KEY[key]
        model = _history_model(spec)
        earlier = model.objects.filter(id=OuterRef("id"), history_id__lt=OuterRef("history_id")).order_by("-history_id")
        found = list(
            model.objects.filter(history_id__in=ids).annotate(
                audit_previous_history_id=Subquery(earlier.values("history_id")[:1])
            )
        )
        for record in found:
            records[(key, record.history_id)] = record
        wanted = [r.audit_previous_history_id for r in found if r.audit_previous_history_id]
        for record in model.objects.filter(history_id__in=wanted):
            previous[(key, record.history_id)] = record
        for attname, label, column in spec.related_names:
            values = {getattr(r, attname) for r in found if getattr(r, attname) is not None}
            related = apps.get_model(label)
            names[(key, attname)] = dict(related.objects.filter(pk__in=values).values_list("pk", column))
    users = dict(
        get_user_model()
        .objects.filter(pk__in={r["history_user_id"] for r in rows if r["history_user_id"]})
        .values_list("pk", "username")
    )
    environments = {
        e.pk: e for e in Environment.objects.filter(pk__in={r["environment_ref"] for r in rows if r["environment_ref"]})
    }
    organizations = dict(
        Organization.objects.filter(pk__in={r["organization_ref"] for r in rows if r["organization_ref"]}).values_list(
            "pk", "name"
        )
    )
    entries = []
    for row in rows:
        key = row["model_key"]
        spec = AUDITED_BY_KEY[key]
        record = records.get((key, row["history_id"]))
        if record is None:
            continue
        before = previous.get((key, record.audit_previous_history_id)) if record.audit_previous_history_id else None
        parts = [str(getattr(record, name)) for name in spec.name_fields if getattr(record, name, "")]
        for attname, _label, _column in spec.related_names:
            value = names[(key, attname)].get(getattr(record, attname))
            if value is not None:
                parts.append(str(value))
        entries.append(
            {
                "history_id": record.history_id,
                "model": key,
                "when": record.history_date,
                "who": users.get(record.history_user_id) or "system",
                "action": {"+": "created", "~": "changed", "-": "deleted"}[record.history_type],
                "what": spec.title,
                "object_id": record.id,
                "name": " · ".join(parts),
                "reason": record.history_change_reason or "",
                "environment": environments.get(row["environment_ref"]),
                "organization": organizations.get(row["organization_ref"]),
                "changes": _changes(record, before),
            }
        )
    return entries


def audit_filter_choices(user) -> dict:
    """What the audit filters offer: the environments and organizations the user may see."""
    environments = Environment.objects.restrict(user).select_related("organization")
    organizations = Organization.objects.restrict(user)
    return {
        "environments": environments.order_by("organization__name", "position", "name"),
        "organizations": organizations.order_by("name"),
    }
