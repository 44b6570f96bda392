"""Column profiles of the built-in executor: the same rows give the same profile on SQLite and
PostgreSQL (as sources and as destinations), the distinct estimate is within the sketch's stated
error, profiles merge and ignore row order, and expectation measurements (accepted values, unique)."""

import datetime
import decimal
import random

import pytest

from apps.runs import executor, profiles, values
from apps.runs.executor import DestinationMetrics, canonical_value
from tests.egress_support import sqlite_file
from tests.runs.test_executor import ENV, _batches, _targets, destination, pg_params  # noqa: F401 (fixtures)

COLUMNS = ["id", "amount", "label", "category", "day", "created", "active", "blob"]


def _rows(count=300, *, decimals=False):
    rng = random.Random(7)
    rows = []
    for i in range(count):
        amount = round(rng.random() * 1000, 2)
        rows.append(
            (
                i,
                decimal.Decimal(str(amount)) if decimals else amount,
                None if i % 11 == 0 else f"label {i} é",
                rng.choice(["a", "b", "c"]),
                datetime.date(2024, 1, 1 + i % 28),
                datetime.datetime(2024, 3, 1, 12, i % 60, tzinfo=datetime.UTC),
                i % 3 == 0,
                bytes([i % 256, 7]),
            )
        )
    return rows


def _profile(rows, columns=COLUMNS, size=50, **kwargs):
    metrics = DestinationMetrics(table="t", key=[], **kwargs)
    first = rows[:size]
    metrics.start(columns, [values.column_class(row[i] for row in first) for i in range(len(columns))])
    for _columns, batch in _batches(columns, rows, size):
        metrics.add_batch(columns, batch)
    return metrics.as_dict()["columns"]


def test_a_profile_describes_each_column_by_type():
    result = _profile(_rows())
    assert {name: p["type"] for name, p in result.items()} == {
        "id": "integer",
        "amount": "number",
        "label": "text",
        "category": "text",
        "day": "date",
        "created": "timestamptz",
        "active": "boolean",
        "blob": "bytes",
    }
    ident = result["id"]
    assert (ident["count"], ident["null_count"], ident["min"], ident["max"]) == (300, 0, 0, 299)
    assert ident["sum"] == sum(range(300)) and ident["mean"] == "149.5" and ident["distinct"] == 300
    label = result["label"]
    assert label["null_count"] == 28 and label["null_share"] == round(28 / 300, 6)
    assert (label["min_length"], label["max_length"]) == (9, 11) and label["min"] == "label 1 é"
    assert "sum" not in label and "min_length" not in ident
    assert result["category"]["distinct"] == 3 and result["day"]["min"] == "2024-01-01"
    assert result["created"]["max"] == "2024-03-01T12:59:00+00:00" and result["active"]["max"] == 1


def test_the_same_values_from_floats_or_decimals_give_the_same_profile():
    # SQLite reads REAL as float, PostgreSQL NUMERIC as Decimal: the profile is the same.
    as_floats, as_decimals = _profile(_rows()), _profile(_rows(decimals=True))
    assert as_floats == as_decimals
    assert as_floats["amount"]["sum"] == canonical_value(sum(decimal.Decimal(str(r[1])) for r in _rows()))


def test_profiles_ignore_row_order_and_merge():
    rows = _rows()
    shuffled = rows[:]
    random.Random(3).shuffle(shuffled)
    assert _profile(shuffled) == _profile(rows)
    changed = rows[:]
    changed[10] = (10, 1.5, *changed[10][2:])
    assert _profile(changed)["amount"]["hash"] != _profile(rows)["amount"]["hash"]
    assert _profile(changed)["label"]["hash"] == _profile(rows)["label"]["hash"]

    classes = [values.column_class(row[i] for row in rows) for i in range(len(COLUMNS))]
    halves = []
    for part in (rows[:137], rows[137:]):
        table = profiles.TableProfile(COLUMNS, classes)
        table.add_batch(part, canonical_value)
        halves.append(table)
    for mine, theirs in zip(halves[0].columns, halves[1].columns, strict=True):
        mine.merge(theirs)
    assert halves[0].as_dict(canonical_value) == _profile(rows)


@pytest.mark.parametrize("count", [1_000, 20_000, 200_000])
def test_the_distinct_estimate_is_within_the_sketchs_stated_error(count):
    # Standard error 1.04/sqrt(2**14) = 0.81%; three standard errors cover 99.7% of estimates.
    assert pytest.approx(0.0081, abs=0.0001) == profiles.HLL_STANDARD_ERROR
    rows = [(i, f"user-{i * 7919}") for i in range(count)]
    result = _profile(rows, ["id", "email"], size=1000)
    for name in ("id", "email"):
        estimate = result[name]["distinct"]
        assert abs(estimate - count) <= 3 * profiles.HLL_STANDARD_ERROR * count, (name, estimate)
    repeated = _profile([(i % 500, "x") for i in range(count)], ["id", "email"], size=1000)
    assert abs(repeated["id"]["distinct"] - 500) <= 3 * profiles.HLL_STANDARD_ERROR * 500
    assert repeated["email"]["distinct"] == 1


def test_a_sketch_has_a_fixed_size_whatever_the_row_count():
    small, large = profiles.ColumnProfile("c", "integer"), profiles.ColumnProfile("c", "integer")
    small.add_values(list(range(100)), canonical_value)
    for start in range(0, 300_000, 1000):
        large.add_values(list(range(start, start + 1000)), canonical_value)
    assert len(small.sketch.registers) == len(large.sketch.registers) == profiles.HLL_M


def test_the_same_rows_give_identical_profiles_in_sqlite_and_postgresql(destination):  # noqa: F811 (the imported fixture)
    kind, connect = destination
    expectations = {"category": {"accepted_values": ["a", "b"]}, "id": {"unique": True}, "label": {"unique": True}}
    rows = _rows()
    rows += [(1000, 5.0, "label 1 é", "z", datetime.date(2024, 1, 1), rows[0][5], False, b"\x00")]
    conn = connect()
    try:
        metrics = DestinationMetrics(table="profiled", key=["id"], expectations=expectations)
        executor.write_destination(
            conn, kind, "profiled", "replace", _batches(COLUMNS, rows, 64), metrics, lambda: None
        )
    finally:
        conn.close()
    result = metrics.as_dict()
    # On PostgreSQL the min/max, sums and lengths of most types come from SQL after the load.
    in_sql = {c.name for c in metrics.profile.columns if c.in_sql}
    assert in_sql == ({"id", "label", "category", "day", "created", "active"} if kind == "postgres" else set())
    reference = _profile(rows, size=64, expectations=expectations)
    # duplicate_values is counted by the destination database; everything else in the stream.
    assert result["columns"]["id"]["duplicate_values"] == 0
    assert result["columns"]["label"]["duplicate_values"] == 1
    assert result["columns"]["category"]["unexpected_count"] == sum(1 for r in rows if r[3] not in ("a", "b"))
    assert set(result["columns"]["category"]["unexpected_sample"]) == {"c", "z"}
    for name in ("id", "label"):
        del result["columns"][name]["duplicate_values"]
    assert result["columns"] == reference  # the same reference for both databases: identical profiles


def test_profiles_can_be_turned_off(destination):  # noqa: F811 (the imported fixture)
    kind, connect = destination
    conn = connect()
    try:
        metrics = DestinationMetrics(table="plain", key=[], profiles=False)
        executor.write_destination(
            conn, kind, "plain", "replace", _batches(["id"], [(1,), (2,)], 1), metrics, lambda: None
        )
    finally:
        conn.close()
    assert "columns" not in metrics.as_dict() and metrics.as_dict()["row_count"] == 2


def test_sqlite_and_postgresql_sources_of_the_same_values_give_the_same_profile(pg_params):  # noqa: F811 (the imported fixture)
    from tests import postgres as pg

    path = sqlite_file(ENV, "profile_source.sqlite3")
    rows = [(i, round(i * 1.25, 2), None if i % 5 == 0 else f"v{i}") for i in range(1, 400)]
    lite = executor.connect("sqlite", {"path": str(path)}, None, environment=ENV)
    lite.execute("CREATE TABLE src (id INTEGER, price REAL, label TEXT)")
    lite.executemany("INSERT INTO src VALUES (?, ?, ?)", rows)
    lite.close()
    with pg.connect(pg_params["database"]) as conn:
        conn.execute("DROP TABLE IF EXISTS src")
        conn.execute("CREATE TABLE src (id BIGINT, price NUMERIC(12, 2), label TEXT)")
        with conn.cursor() as cursor:
            cursor.executemany("INSERT INTO src VALUES (%s, %s, %s)", rows)
    results = []
    for kind, params in (("sqlite", {"path": str(path)}), ("postgres", pg_params)):
        source = executor.connect(kind, params, None, environment=ENV, read_only=True)
        try:
            batches = list(
                executor.read_source(source, "SELECT id, price, label FROM src", executor.Limits(), lambda: None)
            )
        finally:
            source.close()
        columns = batches[0][0]
        all_rows = [row for _c, batch in batches for row in batch]
        results.append(_profile(all_rows, columns, size=executor.BATCH_SIZE))
    assert results[0] == results[1]
    assert results[0]["price"]["sum"] == 99750 and results[0]["label"]["null_count"] == 79
