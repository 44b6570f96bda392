"""The built-in executor: runs a pipeline graph against SQLite and PostgreSQL connections.

Sources are streamed in batches (fetchmany), capped by the policy's max_rows and sampled where the
policy samples; each destination is written inside one transaction on its connection (`replace`
drops and recreates the table, `append` inserts). Per destination it computes the validation
metrics: row count, distinct key count and duplicate keys (asked of the destination in SQL), an
order-independent hash total of the rows that is identical on every database for the same values,
and column profiles (apps.runs.profiles) in bounded memory.

Node types come from apps.pipelines.graph.REGISTRY, the registry the graph validator uses; every
registered type must have a handler here (checked at import)."""

import re
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from apps.connections.targets import check_params, postgres_connect, sqlite_path
from apps.core.errors import ValidationFailed
from apps.pipelines.graph import REGISTRY
from apps.runs import profiles as profiles_mod
from apps.runs import values as run_values
from apps.runs.values import canonical_value, row_digest

BATCH_SIZE = 1000
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$")
SUPPORTED_KINDS = ("sqlite", "postgres")


class ExecutionError(Exception):
    """The run cannot go on; the message is shown to users (never include secret values)."""


class Cancelled(Exception):
    """The run was cancelled between batches."""


class LeaseLost(Exception):
    """Another attempt took the run over (this worker's lease ran out): stop without recording."""


# --- validation metrics ------------------------------------------------------------------------


@dataclass
class DestinationMetrics:
    """What a destination's run measured. Per row only running totals are kept (the row count and
    the hash total); column profiles are bounded sketches (apps.runs.profiles); key uniqueness is
    asked of the destination table in SQL after the load (`key_stats`), so nothing grows with it."""

    table: str
    key: list[str]
    profiles: bool = True
    rows: int = 0
    hash_sum: int = 0
    key_counts: dict | None = None
    expectations: dict = field(default_factory=dict)  # by column (apps.pipelines.expectations.combined)
    profile: profiles_mod.TableProfile | None = field(default=None, repr=False)

    def check_key(self, columns: list[str]) -> None:
        missing = [k for k in self.key if k not in columns]
        if missing:
            raise ExecutionError(f"Key column(s) {', '.join(missing)} of '{self.table}' are not source columns.")

    def start(self, columns: list[str], classes: list[str], *, in_sql: bool = False) -> None:
        """Profiles for these columns; `in_sql`: the destination computes the simple aggregates of
        the SQL_TYPES columns after the load (aggregate_in_sql), Python only the rest."""
        if self.profiles:
            accepted = {
                column: frozenset(canonical_value(v) for v in rules["accepted_values"])
                for column, rules in self.expectations.items()
                if isinstance(rules.get("accepted_values"), list)
            }
            self.profile = profiles_mod.TableProfile(columns, classes, accepted)
            for column in self.profile.columns:
                column.in_sql = in_sql and column.type in profiles_mod.SQL_TYPES

    def aggregate_in_sql(self, cursor, kind: str) -> None:
        """One query over the loaded table for the min/max, sums and text lengths of the columns
        marked `in_sql` (text compared by code point, as Python does: COLLATE "C")."""
        columns = [c for c in (self.profile.columns if self.profile else []) if c.in_sql]
        if not columns:
            return
        parts, shapes = [], []
        for column in columns:
            name = _quote_column(kind, column.name)
            if column.type == "boolean":
                parts += [f"BOOL_AND({name})", f"BOOL_OR({name})"]
            elif column.type == "text":
                parts += [f'MIN({name} COLLATE "C")', f'MAX({name} COLLATE "C")']
            else:
                parts += [f"MIN({name})", f"MAX({name})"]
            if column.type == "integer":
                parts.append(f"SUM({name})")
            if column.type == "text":
                parts += [f"MIN(LENGTH({name}))", f"MAX(LENGTH({name}))"]
            shapes.append((column, len(parts)))
        cursor.execute(f"SELECT {', '.join(parts)} FROM {_quote(kind, self.table)}")  # noqa: S608 (quoted)
        row, start = cursor.fetchone(), 0
        for column, end in shapes:
            values = row[start:end]
            start = end
            if column.type == "integer":
                column.set_from_sql(values[0], values[1], total=values[2])
            elif column.type == "text":
                column.set_from_sql(values[0], values[1], min_length=values[2], max_length=values[3])
            else:
                column.set_from_sql(values[0], values[1])

    def unique_columns(self) -> list[str]:
        """Profiled columns with a `unique` expectation (their duplicates are counted in SQL)."""
        if self.profile is None:
            return []
        return [c.name for c in self.profile.columns if self.expectations.get(c.name, {}).get("unique") is True]

    def count_duplicates(self, cursor, kind: str) -> None:
        by_name = {c.name: c for c in self.profile.columns} if self.profile else {}
        for name in self.unique_columns():
            by_name[name].duplicates = duplicate_values(cursor, kind, self.table, name)

    def add(self, columns: list[str], row) -> None:
        self.add_batch(columns, [row])

    def add_batch(self, columns: list[str], batch) -> None:
        self.rows += len(batch)
        self.hash_sum = (self.hash_sum + sum(row_digest(columns, row) for row in batch)) % (1 << 64)
        if self.profile is not None:
            self.profile.add_batch(batch, canonical_value)

    def as_dict(self) -> dict:
        counts = self.key_counts or {"distinct": 0, "duplicates": 0, "sample": []}
        out = {
            "table": self.table,
            "row_count": self.rows,
            "key": self.key,
            "distinct_keys": counts["distinct"] if self.key else None,
            "duplicate_key_count": counts["duplicates"] if self.key else 0,
            "duplicate_keys_sample": counts["sample"] if self.key else [],
            "keys_unique": not counts["duplicates"] if self.key else None,
            "hash_total": f"{self.hash_sum:016x}",
        }
        if self.profiles:
            out["columns"] = self.profile.as_dict(canonical_value) if self.profile is not None else {}
        return out


def duplicate_values(cursor, kind: str, table: str, column: str) -> int:
    """How many non-NULL values of a destination column are stored more than once (SQL, after the load)."""
    quoted, name = _quote(kind, table), _quote_column(kind, column)
    cursor.execute(
        f"SELECT COUNT(*) FROM (SELECT {name} FROM {quoted} WHERE {name} IS NOT NULL "  # noqa: S608 (quoted)
        f"GROUP BY {name} HAVING COUNT(*) > 1) AS d"
    )
    return int(cursor.fetchone()[0])


def key_stats(cursor, kind: str, table: str, key: list[str]) -> dict:
    """Distinct and duplicate keys of the destination table, counted by the database (for `append`,
    over all its rows: a key must be unique in the table, not only in this run's rows)."""
    quoted = _quote(kind, table)
    columns = ", ".join(_quote_column(kind, k) for k in key)
    cursor.execute(
        f"SELECT COUNT(*), COALESCE(SUM(CASE WHEN n > 1 THEN 1 ELSE 0 END), 0) "  # noqa: S608 (quoted identifiers)
        f"FROM (SELECT COUNT(*) AS n FROM {quoted} GROUP BY {columns}) AS g"
    )
    distinct, duplicates = cursor.fetchone()
    sample = []
    if duplicates:
        cursor.execute(
            f"SELECT {columns} FROM {quoted} GROUP BY {columns} HAVING COUNT(*) > 1 "  # noqa: S608
            f"ORDER BY {columns} LIMIT 10"
        )
        sample = [[canonical_value(v) for v in row] for row in cursor.fetchall()]
    return {"distinct": int(distinct), "duplicates": int(duplicates), "sample": sample}


# --- connections ------------------------------------------------------------------------------


def connect(kind: str, params: dict, password: str | None, *, environment, read_only: bool = False):
    """A DB-API connection for a resolved binding of `environment` (sources are opened read-only).
    The target is checked against the egress policy on the addresses it resolves to now."""
    if kind not in SUPPORTED_KINDS:
        raise ExecutionError(f"The built-in executor reads and writes {', '.join(SUPPORTED_KINDS)} only, not {kind}.")
    try:
        addresses = check_params(kind, params, environment=environment, connect=True)
        path = sqlite_path(params["path"], environment=environment) if kind == "sqlite" else None
    except ValidationFailed as exc:
        raise ExecutionError(exc.message) from exc
    if path is not None:  # sqlite
        if read_only:
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        path.parent.mkdir(parents=True, exist_ok=True)
        return sqlite3.connect(path, timeout=30, isolation_level=None)
    if kind == "postgres":
        return postgres_connect(params, password, addresses, default_timeout=10, autocommit=True)


def _quote(kind: str, table: str) -> str:
    if not isinstance(table, str) or not IDENTIFIER.fullmatch(table):
        raise ExecutionError(f"'{table}' is not a plain table name (letters, digits, _, optionally schema.table).")
    return ".".join(f'"{part}"' for part in table.split("."))


def _quote_column(kind: str, name: str) -> str:
    """A source column name as a destination identifier. Column names come from the source query,
    so they are quoted (embedded quotes doubled), never pasted into the destination's SQL."""
    if not name or "\x00" in name or len(name) > 63 or (kind == "postgres" and "%" in name):
        raise ExecutionError(f"Column {name!r} cannot be a destination column name; alias it in the source query.")
    return '"' + name.replace('"', '""') + '"'


# --- running ----------------------------------------------------------------------------------


@dataclass
class Limits:
    max_rows: int | None = None
    sample_rows: int | None = None
    sample_percent: float | None = None
    batch_size: int = BATCH_SIZE
    profiles: bool = True  # column profiles per destination (off: only counts, keys and the hash total)


def _keep(columns, row, percent: float) -> bool:
    """Deterministic sampling: the same rows are kept on every run and database."""
    return row_digest(columns, row) % 10_000 < percent * 100


def read_source(conn, query: str, limits: Limits, check: Callable[[], None]) -> Iterator[tuple[list[str], list]]:
    """Yield (columns, batch of rows) from a source query, honouring max_rows and sampling."""
    if isinstance(conn, sqlite3.Connection):
        cursor = conn.cursor()
    else:
        # A client-side psycopg cursor loads the whole result on execute (max_rows would bound
        # nothing); a named cursor fetches batch by batch, and lives in a transaction.
        conn.autocommit = False
        cursor = conn.cursor(name="planasonix_source")
    cursor.execute(query)
    columns = [d[0] for d in cursor.description]
    # max_rows bounds rows READ; sample_rows bounds rows KEPT (after percent sampling).
    read_cap = limits.max_rows if limits.max_rows is not None else float("inf")
    keep_cap = min(x for x in (limits.max_rows, limits.sample_rows, float("inf")) if x is not None)
    read = taken = 0
    while taken < keep_cap and read < read_cap:
        size = int(min(limits.batch_size, read_cap - read))
        if limits.sample_percent is None:
            size = int(min(size, keep_cap - taken))
        batch = cursor.fetchmany(size)
        if not batch:
            break
        read += len(batch)
        check()
        if limits.sample_percent is not None:
            batch = [row for row in batch if _keep(columns, row, limits.sample_percent)]
        if taken + len(batch) > keep_cap:
            batch = batch[: int(keep_cap - taken)]
        taken += len(batch)
        if batch:
            yield columns, batch
    cursor.close()


def write_destination(
    conn, kind: str, table: str, mode: str, batches, metrics: DestinationMetrics, check: Callable[[], None]
) -> None:
    """Write every batch to `table` in one transaction (all or nothing); `check` runs once more just
    before COMMIT, so a worker that lost its run to another attempt (or was cancelled) during the
    last statement rolls back instead of writing twice."""
    quoted = _quote(kind, table)
    placeholder = "?" if kind == "sqlite" else "%s"
    cursor = conn.cursor()
    cursor.execute("BEGIN")
    try:
        created = False
        for columns, batch in batches:
            if not created:
                names = [_quote_column(kind, c) for c in columns]
                classes = [run_values.column_class(row[i] for row in batch) for i in range(len(columns))]
                metrics.check_key(columns)
                metrics.start(columns, classes, in_sql=kind == "postgres" and mode == "replace")
                definition = ", ".join(
                    f"{n} {run_values.column_type(kind, k)}" for n, k in zip(names, classes, strict=True)
                )
                if mode == "replace":
                    cursor.execute(f"DROP TABLE IF EXISTS {quoted}")
                cursor.execute(f"CREATE TABLE IF NOT EXISTS {quoted} ({definition})")
                insert = (
                    f"INSERT INTO {quoted} ({', '.join(names)}) "  # noqa: S608 (identifiers quoted above)
                    f"VALUES ({', '.join([placeholder] * len(columns))})"
                )
                created = True
            _check_types(columns, classes, batch)
            if kind == "sqlite":
                cursor.executemany(insert, [[run_values.sqlite_value(v) for v in row] for row in batch])
            else:
                cursor.executemany(insert, batch)
            metrics.add_batch(columns, batch)
        if not created and mode == "replace" and _table_exists(cursor, kind, table):
            cursor.execute(f"DELETE FROM {quoted}")  # noqa: S608  (no rows: replace leaves the table empty)
        if metrics.key and (created or _table_exists(cursor, kind, table)):
            metrics.key_counts = key_stats(cursor, kind, table, metrics.key)
        if created:
            metrics.count_duplicates(cursor, kind)
            metrics.aggregate_in_sql(cursor, kind)
        check()
        cursor.execute("COMMIT")
    except BaseException:
        cursor.execute("ROLLBACK")
        raise
    finally:
        cursor.close()


def _check_types(columns: list[str], classes: list[str], batch) -> None:
    """Refuse a value the column (typed from the first batch) would silently alter (so the metrics,
    computed from the rows read, always describe the rows stored)."""
    for i, column_class in enumerate(classes):
        allowed = run_values.STORES[column_class]
        for row in batch:
            value_class = run_values.value_class(row[i])
            if value_class is not None and value_class not in allowed:
                raise ExecutionError(
                    f"Column '{columns[i]}' mixes {column_class} and {value_class} values "
                    f"({canonical_value(row[i])!r}): the destination would alter them; cast it in the source query."
                )


def _table_exists(cursor, kind: str, table: str) -> bool:
    name = table.split(".")[-1]
    if kind == "sqlite":
        cursor.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", [name])
    else:
        cursor.execute("SELECT 1 FROM information_schema.tables WHERE table_name=%s", [name])
    return cursor.fetchone() is not None


def _logged_batches(batches, log: Callable[..., None], node_id: str):
    for number, (columns, batch) in enumerate(batches, 1):
        log(f"{node_id}: batch {number}, {len(batch)} rows read", "DEBUG")
        yield columns, batch


def execute_graph(
    resolved: Mapping[str, Any], limits: Limits, check: Callable[[], None], log: Callable[..., None], *, environment
) -> dict:
    """Run the resolved graph (of `environment`); return metrics per destination node. `log(message,
    level="INFO")` (apps.runs.run_log.RunLog) keeps what the environment's log level lets through."""
    graph = resolved["graph"]
    connections = resolved["connections"]
    nodes = {n["id"]: n for n in graph["nodes"]}
    inputs: dict[str, list[str]] = {}
    for source, target in graph["edges"]:
        inputs.setdefault(target, []).append(source)
    metrics = {}
    log(
        f"limits: max_rows={limits.max_rows}, sample_rows={limits.sample_rows}, "
        f"sample_percent={limits.sample_percent}, batch_size={limits.batch_size}",
        "DEBUG",
    )
    for node in graph["nodes"]:
        if node["type"] != "destination":
            continue
        upstream = inputs.get(node["id"], [])
        if len(upstream) != 1 or nodes[upstream[0]]["type"] != "source":
            raise ExecutionError(f"Destination '{node['id']}' must take exactly one source as input.")
        source = nodes[upstream[0]]
        source_binding = connections[source["connection"]]
        target_binding = connections[node["connection"]]
        log(f"{source['id']}: reading from '{source['connection']}' ({source_binding['kind']})", "DEBUG")
        source_conn = connect(
            source_binding["kind"],
            source_binding["params"],
            source_binding.get("credential_value"),
            environment=environment,
            read_only=True,
        )
        try:
            target_conn = connect(
                target_binding["kind"],
                target_binding["params"],
                target_binding.get("credential_value"),
                environment=environment,
            )
        except BaseException:
            source_conn.close()
            raise
        try:
            result = DestinationMetrics(table=node["table"], key=list(node.get("key") or []), profiles=limits.profiles)
            log(f"{source['id']} → {node['id']} ({node.get('mode', 'replace')} {node['table']})")
            write_destination(
                target_conn,
                target_binding["kind"],
                node["table"],
                node.get("mode", "replace"),
                _logged_batches(read_source(source_conn, source["query"], limits, check), log, source["id"]),
                result,
                check,
            )
            measured = metrics[node["id"]] = result.as_dict()
            log(f"{node['id']}: {result.rows} rows written")
            log(
                f"{node['id']}: {measured['distinct_keys']} distinct keys, "
                f"{measured['duplicate_key_count']} duplicate, hash total {measured['hash_total']}",
                "DEBUG",
            )
        finally:
            source_conn.close()
            target_conn.close()
    return metrics


HANDLED_NODE_TYPES = {"source", "destination"}
if set(REGISTRY) != HANDLED_NODE_TYPES:  # the validator and the executor share one registry
    raise RuntimeError(f"executor handles {sorted(HANDLED_NODE_TYPES)} but the graph registry has {sorted(REGISTRY)}")
