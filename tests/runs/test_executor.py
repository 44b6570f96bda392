"""The built-in executor on its own: canonical values and hash totals, sampling, write modes,
all-or-nothing writes, identifiers that cannot inject SQL, cancelling between batches, streaming.

PostgreSQL cases use a scratch database on the server of tests/postgres.py (DATABASE_URL's) and skip
only when it is unreachable (fail under REQUIRE_POSTGRES=1)."""

import datetime
import decimal
import json
import random
import sqlite3
from types import SimpleNamespace

import pytest

from apps.runs import executor
from apps.runs.executor import DestinationMetrics, Limits
from tests import postgres as pg
from tests.egress_support import sqlite_file

# The environment the connections belong to (its SQLite folder; no organization lists).
ENV = SimpleNamespace(pk=1, organization_id=1, organization=None)


@pytest.fixture(autouse=True)
def _targets(allow_loopback, sqlite_root):
    """The local PostgreSQL is reached through the operator's allow-list; SQLite files live in ENV's folder."""


@pytest.fixture(scope="module")
def pg_params():
    """A scratch PostgreSQL database for pipeline data (dropped afterwards)."""
    with pg.scratch_database("planasonix_r2_data") as params:
        yield params


@pytest.fixture(params=["sqlite", "postgres"])
def destination(request):
    """(kind, connect()) for a destination database of either kind."""
    if request.param == "sqlite":
        path = sqlite_file(ENV, "dest.sqlite3")
        return "sqlite", lambda: executor.connect("sqlite", {"path": str(path)}, None, environment=ENV)
    params = request.getfixturevalue("pg_params")
    with executor.connect("postgres", params, None, environment=ENV) as conn:
        conn.execute("DROP SCHEMA public CASCADE")
        conn.execute("CREATE SCHEMA public")
    return "postgres", lambda: executor.connect("postgres", params, None, environment=ENV)


def _run_sql(connect, sql, params=()):
    conn = connect()
    try:
        cursor = conn.cursor()
        cursor.execute(sql, params) if params else cursor.execute(sql)
        return cursor.fetchall() if cursor.description else None
    finally:
        conn.close()


def _batches(columns, rows, size):
    for start in range(0, len(rows), size):
        yield columns, rows[start : start + size]


def _write(connect, kind, table, mode, columns, rows, size=2, key=()):
    conn = connect()
    metrics = DestinationMetrics(table=table, key=list(key))
    try:
        executor.write_destination(conn, kind, table, mode, _batches(columns, rows, size), metrics, lambda: None)
    finally:
        conn.close()
    return metrics


def _table(connect, table, order="1"):
    return [tuple(r) for r in _run_sql(connect, f'SELECT * FROM "{table}" ORDER BY {order}')]  # noqa: S608


def _hash(columns, rows):
    metrics = DestinationMetrics(table="t", key=[])
    for row in rows:
        metrics.add(columns, row)
    return metrics.as_dict()["hash_total"]


# --- canonical values and hash totals ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (7, 7),
        (1.25, "1.25"),
        (3.10, "3.1"),
        (decimal.Decimal("3.10"), "3.1"),
        (decimal.Decimal("2.00"), 2),
        (2.0, 2),
        (decimal.Decimal("-0.000500"), "-0.0005"),
        (True, 1),
        (False, 0),
        ("text é", "text é"),
        (datetime.date(2024, 2, 29), "2024-02-29"),
        (datetime.datetime(2024, 1, 2, 3, 4, 5), "2024-01-02T03:04:05"),
        (
            datetime.datetime(2024, 1, 2, 4, 4, 5, tzinfo=datetime.timezone(datetime.timedelta(hours=1))),
            "2024-01-02T03:04:05+00:00",
        ),
        (b"\x00\xff", "00ff"),
        (float("inf"), "Infinity"),
        (decimal.Decimal("-Infinity"), "-Infinity"),
    ],
)
def test_canonical_value_is_the_same_whatever_database_produced_it(value, expected):
    # compared as JSON, as they are hashed: True and 1 are equal in Python but not in JSON
    assert json.dumps(executor.canonical_value(value)) == json.dumps(expected)


def test_hash_total_ignores_row_order_and_sees_a_single_changed_value():
    columns = ["id", "amount", "label", "day"]
    rows = [(i, round(i * 1.25, 2), f"row {i}", None if i % 3 else "2024-01-02") for i in range(1, 200)]
    shuffled = rows[:]
    random.Random(4).shuffle(shuffled)
    assert shuffled != rows
    assert _hash(columns, shuffled) == _hash(columns, rows)

    changed = rows[:]
    changed[57] = (58, 72.51, "row 58", changed[57][3])
    assert _hash(columns, changed) != _hash(columns, rows)
    # Column order does not matter (a row is hashed by column name), but which column holds a value does.
    assert _hash(["label", "id", "amount", "day"], [(r[2], r[0], r[1], r[3]) for r in rows]) == _hash(columns, rows)
    assert _hash(["amount", "id", "label", "day"], rows) != _hash(columns, rows)


def test_key_metrics_count_distinct_and_duplicate_keys_in_the_destination(destination):
    kind, connect = destination
    rows = [(1, "a"), (2, "b"), (2, "c"), (3, "d"), (3, "e"), (3, "f")]
    result = _write(connect, kind, "keyed", "replace", ["id", "v"], rows, key=["id"]).as_dict()
    assert result["row_count"] == 6 and result["distinct_keys"] == 3
    assert result["duplicate_key_count"] == 2 and sorted(result["duplicate_keys_sample"]) == [[2], [3]]
    assert result["keys_unique"] is False
    # Counted by the database over the table: an append that repeats a stored key is caught too.
    _write(connect, kind, "ledger_keys", "replace", ["id", "v"], [(1, "a"), (2, "b")], key=["id"])
    appended = _write(connect, kind, "ledger_keys", "append", ["id", "v"], [(2, "c"), (4, "d")], key=["id"])
    assert appended.as_dict()["row_count"] == 2 and appended.as_dict()["distinct_keys"] == 3
    assert appended.as_dict()["duplicate_keys_sample"] == [[2]] and appended.as_dict()["keys_unique"] is False
    # No key: nothing counted.
    plain = _write(connect, kind, "plain", "replace", ["id", "v"], rows).as_dict()
    assert plain["distinct_keys"] is None and plain["keys_unique"] is None and plain["duplicate_key_count"] == 0


# --- reading: sampling, caps, streaming -------------------------------------------------------


@pytest.fixture
def source():
    path = sqlite_file(ENV, "source.sqlite3")
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE items (id INTEGER, amount REAL, label TEXT)")
        conn.executemany("INSERT INTO items VALUES (?, ?, ?)", [(i, i * 0.5, f"item {i}") for i in range(1, 1001)])
    conn.close()
    return lambda: executor.connect("sqlite", {"path": str(path)}, None, environment=ENV)


def _read(connect, query, limits, check=lambda: None):
    conn = connect()
    try:
        return [row for _, batch in executor.read_source(conn, query, limits, check) for row in batch]
    finally:
        conn.close()


def test_sampling_by_percent_is_deterministic(source):
    query = "SELECT id, amount, label FROM items ORDER BY id"
    first = _read(source, query, Limits(sample_percent=25.0))
    again = _read(source, query, Limits(sample_percent=25.0, batch_size=7))
    reversed_order = _read(source, "SELECT id, amount, label FROM items ORDER BY id DESC", Limits(sample_percent=25.0))
    assert 150 < len(first) < 350  # about a quarter of 1000
    assert again == first
    assert sorted(reversed_order) == first
    assert len(_read(source, query, Limits(sample_percent=100.0))) == 1000
    smaller = _read(source, query, Limits(sample_percent=10.0))
    assert set(smaller) < set(first)  # a smaller share keeps a subset: the same rows on every run


def test_max_rows_and_sample_rows_cap_rows_read(source):
    query = "SELECT id FROM items ORDER BY id"
    assert _read(source, query, Limits(max_rows=30, batch_size=7)) == [(i,) for i in range(1, 31)]
    assert len(_read(source, query, Limits(max_rows=500, sample_rows=40))) == 40
    # max_rows bounds rows READ: sampling keeps about half of the first 5, never rows beyond them.
    kept = _read(source, query, Limits(max_rows=5, sample_percent=50.0))
    assert len(kept) < 5 and all(row[0] <= 5 for row in kept)


def test_postgres_source_is_streamed_not_loaded_whole(pg_params):
    """A division by zero at row 1000 is never computed when only the first rows are fetched: the
    whole result is not loaded on execute (it would be with a client-side cursor)."""
    connect = lambda: executor.connect("postgres", pg_params, None, environment=ENV)  # noqa: E731
    rows = _read(connect, "SELECT i, 1 / (1000 - i) AS d FROM generate_series(1, 2000) AS i", Limits(max_rows=5))
    assert [r[0] for r in rows] == [1, 2, 3, 4, 5]


# --- writing ----------------------------------------------------------------------------------


def test_append_adds_rows_and_replace_replaces_them(destination):
    kind, connect = destination
    columns = ["id", "amount", "label"]
    rows = [(1, 1.25, "a"), (2, 3.1, "b"), (3, None, "c")]
    _write(connect, kind, "mart", "replace", columns, rows)
    _write(connect, kind, "mart", "append", columns, rows)
    assert len(_table(connect, "mart")) == 6
    _write(connect, kind, "mart", "replace", columns, rows[:2])
    assert [r[0] for r in _table(connect, "mart")] == [1, 2]
    # replace with no rows leaves the table there, and empty
    _write(connect, kind, "mart", "replace", columns, [])
    assert _table(connect, "mart") == []


def test_written_rows_read_back_with_the_reported_hash(destination):
    kind, connect = destination
    columns = ["id", "price", "label", "day", "at", "flag", "blob"]
    at = datetime.datetime(2024, 6, 30, 22, 0, tzinfo=datetime.UTC)
    rows = [
        (1, decimal.Decimal("3.10"), "a", datetime.date(2024, 1, 2), at, True, b"\x01"),
        (2, decimal.Decimal("2.00"), None, None, None, False, None),
        (3, None, "c é", datetime.date(1999, 12, 31), at, None, b""),
    ]
    metrics = _write(connect, kind, "typed", "replace", columns, rows, key=["id"])
    stored = _table(connect, "typed")
    assert _hash(columns, stored) == metrics.as_dict()["hash_total"] == _hash(columns, rows)


def test_a_failing_insert_rolls_the_whole_write_back(destination):
    kind, connect = destination
    _run_sql(connect, 'CREATE TABLE "ledger" ("id" INTEGER PRIMARY KEY, "label" TEXT)')
    _run_sql(connect, "INSERT INTO ledger VALUES (1, 'kept')")
    rows = [(2, "b"), (3, "c"), (4, "d"), (1, "duplicate key in the third batch")]
    with pytest.raises(Exception) as caught:
        _write(connect, kind, "ledger", "append", ["id", "label"], rows, size=1)
    assert "UNIQUE" in str(caught.value).upper() or "duplicate" in str(caught.value)
    assert _table(connect, "ledger") == [(1, "kept")]


def test_a_failing_replace_keeps_the_previous_table(destination):
    kind, connect = destination
    _write(connect, kind, "mart", "replace", ["id", "label"], [(1, "old"), (2, "old")])
    rows = [(10, "new"), (11, "new"), (12, 5)]  # the third batch would store the number 5 as text
    with pytest.raises(executor.ExecutionError, match="mixes text and integer"):
        _write(connect, kind, "mart", "replace", ["id", "label"], rows, size=2)
    assert _table(connect, "mart") == [(1, "old"), (2, "old")]


def test_a_value_the_column_would_round_is_refused(destination):
    kind, connect = destination
    with pytest.raises(executor.ExecutionError, match="mixes integer and number"):
        _write(connect, kind, "mart", "replace", ["qty"], [(1,), (2,), (2.5,)], size=2)
    catalog = "sqlite_master WHERE name" if kind == "sqlite" else "information_schema.tables WHERE table_name"
    assert not _run_sql(connect, f"SELECT 1 FROM {catalog} = 'mart'")  # noqa: S608


@pytest.mark.parametrize(
    "table", ["x; DROP TABLE victim", 'x"; DROP TABLE victim; --', "victim\n", "a.b.c", "", "1abc", "x y", "mart--"]
)
def test_table_name_injection_is_refused(destination, table):
    kind, connect = destination
    _run_sql(connect, "CREATE TABLE victim (id INTEGER)")
    with pytest.raises(executor.ExecutionError, match="not a plain table name"):
        _write(connect, kind, table, "replace", ["id"], [(1,)])
    assert _table(connect, "victim") == []


def test_column_names_are_quoted_not_pasted_into_the_destination(destination, source):
    kind, connect = destination
    _run_sql(connect, "CREATE TABLE victim (id INTEGER)")
    evil = 'a" INTEGER); DROP TABLE victim; --'
    quoted = '"' + evil.replace('"', '""') + '"'
    source_conn = source()
    try:
        batches = executor.read_source(
            source_conn,
            f"SELECT id AS {quoted} FROM items WHERE id < 3",  # noqa: S608
            Limits(),
            lambda: None,
        )
        metrics = DestinationMetrics(table="mart", key=[])
        conn = connect()
        try:
            executor.write_destination(conn, kind, "mart", "replace", batches, metrics, lambda: None)
        finally:
            conn.close()
    finally:
        source_conn.close()
    assert _table(connect, "victim") == []
    assert _run_sql(connect, f"SELECT {quoted} FROM mart ORDER BY 1") == [(1,), (2,)]  # noqa: S608
    assert metrics.rows == 2


def test_a_key_column_missing_from_the_source_fails_before_writing(destination):
    kind, connect = destination
    with pytest.raises(executor.ExecutionError, match="order_id"):
        _write(connect, kind, "mart", "replace", ["id"], [(1,)], key=["order_id"])


def test_cancel_between_batches_rolls_back(destination, source):
    kind, connect = destination
    _write(connect, kind, "mart", "replace", ["id"], [(-1,)])
    calls = []

    def check():
        calls.append(1)
        if len(calls) == 3:
            raise executor.Cancelled

    source_conn = source()
    try:
        batches = executor.read_source(source_conn, "SELECT id FROM items ORDER BY id", Limits(batch_size=100), check)
        conn = connect()
        try:
            with pytest.raises(executor.Cancelled):
                executor.write_destination(
                    conn, kind, "mart", "replace", batches, DestinationMetrics("mart", []), lambda: None
                )
        finally:
            conn.close()
    finally:
        source_conn.close()
    assert len(calls) == 3  # two batches were written (inside the transaction) before the cancel
    assert _table(connect, "mart") == [(-1,)]
