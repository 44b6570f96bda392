"""Loading the rows resolution needs, live or as they were at a moment (from the audit history),
in a fixed number of queries whatever the number of variables.

Rows are read as plain tuples into slotted records rather than model instances: resolution touches
every variable, and building thousands of model objects costs more than the query itself."""

import json
import operator
from dataclasses import dataclass, field

from django.apps import apps
from django.db import connections
from django.db.models import FilteredRelation, Q

from apps.connections.models import ConnectionBinding, ConnectionRole
from apps.environments.models import RuntimePolicy
from apps.secrets.models import Secret
from apps.variables.models import Scope, Variable, VariableOverride

_PIPELINE, _PROJECT, _ORGANIZATION = Scope.PIPELINE.value, Scope.PROJECT.value, Scope.ORGANIZATION.value

DEFINITION_COLUMNS = (
    "id",
    "name",
    "type",
    "default_value",
    "default_secret_id",
    "project_id",
    "pipeline_id",
    "required_in",
    "choices",
    "regex",
    "min_value",
    "max_value",
    "allow_runtime_override",
)


@dataclass(slots=True)
class Definition:
    id: int
    name: str
    type: str
    default_value: object
    default_secret_id: int | None
    project_id: int | None
    pipeline_id: int | None
    required_in: list
    choices: list | None
    regex: str
    min_value: float | None
    max_value: float | None
    allow_runtime_override: bool
    scope: str = ""  # computed once: resolution reads it several times per variable

    def __post_init__(self):
        self.scope = _PIPELINE if self.pipeline_id else _PROJECT if self.project_id else _ORGANIZATION


_definition_row = operator.attrgetter(*DEFINITION_COLUMNS)


@dataclass(slots=True)
class Override:
    variable_id: int
    value: object
    secret_id: int | None


@dataclass(slots=True)
class SecretRef:
    id: int
    name: str


@dataclass
class Snapshot:
    definitions: list = field(default_factory=list)
    overrides: dict = field(default_factory=dict)  # variable id -> Override
    secrets: dict = field(default_factory=dict)  # secret id -> SecretRef
    allowed_secret_ids: set = field(default_factory=set)  # secrets allowed in the environment
    roles: list = field(default_factory=list)
    bindings: dict = field(default_factory=dict)  # role id -> binding
    policy: RuntimePolicy | None = None
    # The definitions' and overrides' fields as tuples, kept by load_live as it builds the records
    # (reading ten thousand records back into tuples to cache them cost a tenth of a cold resolve).
    rows: tuple[list, list] | None = field(default=None, compare=False, repr=False)

    # Cached as plain tuples: pickling ten thousand slotted records one by one took longer than
    # loading them from the database; tuples pickle (and unpickle) in C.
    def __getstate__(self):
        definitions, overrides = self.rows or (
            list(map(_definition_row, self.definitions)),
            [(o.variable_id, o.value, o.secret_id) for o in self.overrides.values()],
        )
        return (
            definitions,
            overrides,
            [(ref.id, ref.name) for ref in self.secrets.values()],
            self.allowed_secret_ids,
            self.roles,
            self.bindings,
            self.policy,
        )

    def __setstate__(self, state):
        definitions, overrides, secrets, self.allowed_secret_ids, self.roles, self.bindings, self.policy = state
        self.definitions = [Definition(*row) for row in definitions]
        self.overrides = {row[0]: Override(*row) for row in overrides}
        self.rows = None  # the records are the state from here on (see __getstate__)
        self.secrets = {row[0]: SecretRef(*row) for row in secrets}


def _scope_filter(organization_id: int, project_id: int | None, pipeline_id: int | None) -> Q:
    scope = Q(project_id__isnull=True, pipeline_id__isnull=True)
    if project_id:
        scope |= Q(project_id=project_id, pipeline_id__isnull=True)
    if pipeline_id:
        scope |= Q(pipeline_id=pipeline_id)
    return Q(organization_id=organization_id) & scope


def _role_filter(organization_id: int, project_id: int | None) -> Q:
    scope = Q(project_id__isnull=True)
    if project_id:
        scope |= Q(project_id=project_id)
    return Q(organization_id=organization_id) & scope


def _raw_rows(queryset):
    """Rows of a values_list queryset straight from the driver: Django's per-column converters cost
    more than the query for thousands of rows; JSON columns are decoded by `_json` instead."""
    sql, params = queryset.query.sql_with_params()
    with connections[queryset.db].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def _json(raw):
    """Decode a JSON column value as the driver returned it (text on SQLite and PostgreSQL)."""
    if raw is None or raw == "null":
        return None
    return json.loads(raw) if isinstance(raw, str) else raw


def _json_cells(rows, positions: tuple[int, ...]) -> list:
    """A tuple per row of its JSON cells at `positions`, decoded with one `json.loads` of one array
    (one parse in C instead of a Python call per cell); SQL NULL and JSON null are None."""
    cells = ["null" if row[i] is None else row[i] for row in rows for i in positions]
    try:
        cells = json.loads("[" + ",".join(cells) + "]")
    except TypeError:  # a driver that decodes JSON itself: join() met a value that is not text
        cells = [_json(cell) for cell in cells]
    return list(zip(*[iter(cells)] * len(positions), strict=True))


def _definition(row) -> Definition:
    """A Definition from a raw row whose first columns are DEFINITION_COLUMNS."""
    pk, name, var_type, default, default_secret_id, project, pipeline, required_in, choices, regex, low, high = row[:12]
    return Definition(
        pk,
        name,
        var_type,
        _json(default),
        default_secret_id,
        project,
        pipeline,
        [] if required_in == "[]" else _json(required_in),
        _json(choices),
        regex,
        low,
        high,
        bool(row[12]),
    )


def _secret_ids(snap: Snapshot) -> set[int]:
    return (
        {d.default_secret_id for d in snap.definitions}
        | {o.secret_id for o in snap.overrides.values()}
        | {b.credential_id for b in snap.bindings.values()}
    ) - {None}


def load_live(*, organization_id: int, project_id, pipeline_id, environment) -> Snapshot:
    snap = Snapshot()
    # Definitions and this environment's overrides in one query (a LEFT JOIN on the override).
    rows = (
        Variable.objects.filter(_scope_filter(organization_id, project_id, pipeline_id))
        .annotate(here=FilteredRelation("overrides", condition=Q(overrides__environment_id=environment.pk)))
        .values_list(*DEFINITION_COLUMNS, "here__id", "here__value", "here__secret_id")
        .order_by()  # Meta.ordering would JOIN the organization to sort what the engine sorts itself
    )
    rows = _raw_rows(rows)
    # Row layout: DEFINITION_COLUMNS (JSON at 3 default, 7 required_in, 8 choices), then 13 the
    # override's id, 14 its value (JSON), 15 its secret.
    cells = _json_cells(rows, (3, 7, 8, 14))
    definitions, overrides = snap.definitions, snap.overrides
    definition_rows: list[tuple] = []
    override_rows: list[tuple] = []
    for row, (default, required_in, choices, value) in zip(rows, cells, strict=True):
        pk = row[0]
        fields = (
            pk, row[1], row[2], default, row[4], row[5], row[6], required_in or [], choices, row[9], row[10],
            row[11], bool(row[12]),
        )  # fmt: skip
        definition_rows.append(fields)
        definitions.append(Definition(*fields))
        if row[13] is not None:
            override = (pk, value, row[15])
            override_rows.append(override)
            overrides[pk] = Override(*override)
    snap.rows = (definition_rows, override_rows)
    snap.roles = list(ConnectionRole.objects.filter(_role_filter(organization_id, project_id)).order_by())
    for binding in ConnectionBinding.objects.filter(
        role_id__in=[r.pk for r in snap.roles], environment_id=environment.pk
    ).order_by():
        snap.bindings[binding.role_id] = binding
    ids = _secret_ids(snap)
    if ids:
        snap.secrets = {
            pk: SecretRef(pk, name)
            for pk, name in Secret.objects.filter(pk__in=ids).order_by().values_list("id", "name")
        }
        snap.allowed_secret_ids = set(
            Secret.allowed_environments.through.objects.filter(
                environment_id=environment.pk, secret_id__in=ids
            ).values_list("secret_id", flat=True)
        )
    snap.policy = RuntimePolicy.objects.filter(environment_id=environment.pk).first()
    return snap


def load_as_of(*, organization_id: int, project_id, pipeline_id, environment, at) -> Snapshot:
    """The same rows as they were at `at`, rebuilt from simple-history's tables (the variables,
    overrides and secrets as raw rows, as load_live reads them)."""
    snap = Snapshot()
    definitions = (
        Variable.history.as_of(at)
        .filter(_scope_filter(organization_id, project_id, pipeline_id))
        .values_list(*DEFINITION_COLUMNS)
        .order_by()
    )
    snap.definitions = [_definition(row) for row in _raw_rows(definitions)]
    ids = {d.id for d in snap.definitions}
    # The environment's overrides then, kept for the variables in scope (no IN list of every id).
    overrides = (
        VariableOverride.history.as_of(at)
        .filter(environment_id=environment.pk)
        .values_list("variable_id", "value", "secret_id")
        .order_by()
    )
    for variable_id, value, secret_id in _raw_rows(overrides):
        if variable_id in ids:
            snap.overrides[variable_id] = Override(variable_id, _json(value), secret_id)
    snap.roles = list(ConnectionRole.history.as_of(at).filter(_role_filter(organization_id, project_id)).order_by())
    for binding in (
        ConnectionBinding.history.as_of(at)
        .filter(role_id__in=[r.pk for r in snap.roles], environment_id=environment.pk)
        .order_by()
    ):
        snap.bindings[binding.role_id] = binding
    secret_ids = _secret_ids(snap)
    names = Secret.history.as_of(at).filter(id__in=secret_ids).values_list("id", "name").order_by()
    snap.secrets = {pk: SecretRef(pk, name) for pk, name in _raw_rows(names)} if secret_ids else {}
    # Which environments a secret allowed is history too: the m2m rows of the secret's version then.
    latest = (
        Secret.history.filter(id__in=secret_ids, history_date__lte=at)
        .order_by("id", "-history_date")
        .values_list("id", "history_id")
    )
    version_of: dict[int, int] = {}
    for secret_id, history_id in latest:
        version_of.setdefault(secret_id, history_id)
    allowed_model = apps.get_model("secrets", "HistoricalSecret_allowed_environments")
    snap.allowed_secret_ids = set(
        allowed_model.objects.filter(
            history_id__in=list(version_of.values()), environment_id=environment.pk
        ).values_list("secret_id", flat=True)
    )
    snap.policy = RuntimePolicy.history.as_of(at).filter(environment_id=environment.pk).first()
    return snap
