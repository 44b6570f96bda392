"""Benchmark of column profiles in the built-in executor (apps.runs.profiles).

A SQLite source of BENCH_ROWS rows (default 1,000,000; five columns: integer key, real amount,
unique text, a 4-value category, a date as text with NULLs) is streamed by the executor's own
read_source/write_destination into a SQLite destination and a PostgreSQL destination
(BENCH_POSTGRES_URL, else DATABASE_URL when it is PostgreSQL, else the local server; skipped when
unreachable), with profiles on and off, in the same run:

  throughput — rows/s with profiles off (the floor: counts, keys in SQL, the row hash total) and on;
               ratio = seconds on / seconds off (aim: ≤ 1.5);
  memory     — tracemalloc peak of a profiled run at 10,000 rows and at BENCH_ROWS rows (SQLite
               destination): flat, the sketches do not grow with the rows (BENCH_MEMORY=0 skips it);
  SQL        — on PostgreSQL, the simple aggregates a profile has (null count, min, max, sum, text
               lengths) as one SQL query after the load, against the same aggregates in Python over
               the streamed batches: which is faster decides where they are computed.

Run: make bench (BENCH_ROWS=100000 for a quick look)."""

import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "benchmarks" / "results"
ROWS = int(os.environ.get("BENCH_ROWS", "1000000"))
SMALL = 10_000
MEMORY = os.environ.get("BENCH_MEMORY", "1") != "0"
COLUMNS = ["id", "amount", "label", "category", "day"]


def setup() -> Path:
    tmp = Path(tempfile.mkdtemp(prefix="planasonix-bench-profiles-"))
    os.environ.setdefault("PLANASONIX_VAR_DIR", str(tmp))
    postgres = os.environ.get("BENCH_POSTGRES_URL") or (
        os.environ["DATABASE_URL"] if os.environ.get("DATABASE_URL", "").startswith("postgres") else ""
    )
    os.environ["BENCH_PG"] = postgres or "postgres://postgres@127.0.0.1:5432/postgres"
    os.environ["DATABASE_URL"] = f"sqlite:///{tmp / 'app.sqlite3'}"  # the app's own database is not used
    os.environ.setdefault("CACHE_URL", "locmemcache://bench")
    os.environ.setdefault("CELERY_BROKER_URL", "memory://")
    os.environ["DJANGO_SETTINGS_MODULE"] = "planasonix_env.settings"
    import django

    django.setup()
    return tmp


def make_source(path: Path, rows: int) -> None:
    rng = random.Random(1)
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE t (id INTEGER, amount REAL, label TEXT, category TEXT, day TEXT)")
    conn.executemany(
        "INSERT INTO t VALUES (?, ?, ?, ?, ?)",
        (
            (
                i,
                round(rng.random() * 1000, 2),
                f"customer {i:08d}",
                rng.choice("abcd"),
                None if i % 7 == 0 else f"2024-01-{1 + i % 28:02d}",
            )
            for i in range(rows)
        ),
    )
    conn.commit()
    conn.close()


def run(source: Path, target, kind: str, *, profiles: bool, rows: int) -> tuple[float, dict]:
    from apps.runs import executor

    src = sqlite3.connect(source)
    try:
        metrics = executor.DestinationMetrics(table="bench_out", key=["id"], profiles=profiles)
        limits = executor.Limits(max_rows=rows)
        start = time.perf_counter()
        executor.write_destination(
            target,
            kind,
            "bench_out",
            "replace",
            executor.read_source(src, "SELECT * FROM t", limits, lambda: None),
            metrics,
            lambda: None,
        )
        return time.perf_counter() - start, metrics.as_dict()
    finally:
        src.close()


def sqlite_target(tmp: Path):
    path = tmp / f"out_{uuid.uuid4().hex[:6]}.sqlite3"
    return sqlite3.connect(path, isolation_level=None)


def postgres_database():
    """(admin connection, connection to a scratch database) or None when the server does not answer."""
    import environ
    import psycopg

    config = environ.Env.db_url_config(os.environ["BENCH_PG"])
    params = {
        "host": config.get("HOST") or "127.0.0.1",
        "port": int(config.get("PORT") or 5432),
        "user": config.get("USER") or "postgres",
        "password": config.get("PASSWORD") or None,
    }
    try:
        admin = psycopg.connect(dbname="postgres", autocommit=True, connect_timeout=3, **params)
    except psycopg.OperationalError as exc:
        print(f"PostgreSQL unreachable ({exc}); its rows are skipped")
        return None
    name = f"planasonix_bench_profiles_{os.getpid()}"
    admin.execute(f"DROP DATABASE IF EXISTS {name}")
    admin.execute(f"CREATE DATABASE {name}")
    return admin, name, params


def python_aggregates(source: Path, rows: int) -> float:
    """Seconds for the simple aggregates in Python over the streamed batches (as profiles do them)."""
    from apps.runs import executor

    src = sqlite3.connect(source)
    start = time.perf_counter()
    for _columns, batch in executor.read_source(src, "SELECT * FROM t", executor.Limits(max_rows=rows), lambda: None):
        for position in range(len(COLUMNS)):
            present = [row[position] for row in batch if row[position] is not None]
            min(present), max(present)
            if position < 2:
                sum(present)
            elif position > 1:
                lengths = list(map(len, present))
                min(lengths), max(lengths)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    for _ in executor.read_source(src, "SELECT * FROM t", executor.Limits(max_rows=rows), lambda: None):
        pass
    src.close()
    return seconds - (time.perf_counter() - start)  # less the reading itself (done anyway)


_AGGREGATES = [
    'COUNT(*) - COUNT("amount"), MIN("amount"), MAX("amount"), SUM("amount")',
    'COUNT(*) - COUNT("id"), MIN("id"), MAX("id"), SUM("id")',
    *(
        f'COUNT(*) - COUNT("{c}"), MIN("{c}" COLLATE "C"), MAX("{c}" COLLATE "C"), '
        f'MIN(LENGTH("{c}")), MAX(LENGTH("{c}"))'
        for c in ("label", "category", "day")
    ),
]
SQL_AGGREGATES = "SELECT " + ", ".join(_AGGREGATES) + " FROM bench_out"  # noqa: S608 (the benchmark's own columns)


def main() -> None:
    tmp = setup()
    source = tmp / "source.sqlite3"
    print(f"making a {ROWS:,}-row source…")
    make_source(source, ROWS)
    results = {"benchmark": "profiles", "rows": ROWS, "throughput": [], "memory": None, "sql_vs_python": None}

    def measure(kind: str, connect) -> None:
        times = {}
        for profiles in (False, True):
            target = connect()
            try:
                times[profiles], metrics = run(source, target, kind, profiles=profiles, rows=ROWS)
            finally:
                target.close()
            assert metrics["row_count"] == ROWS and metrics["keys_unique"] is True
        row = {
            "destination": kind,
            "seconds_off": round(times[False], 2),
            "seconds_on": round(times[True], 2),
            "rows_per_s_off": round(ROWS / times[False]),
            "rows_per_s_on": round(ROWS / times[True]),
            "ratio": round(times[True] / times[False], 2),
        }
        results["throughput"].append(row)
        print(
            f"  {kind:8}  off {row['rows_per_s_off']:>9,} rows/s  on {row['rows_per_s_on']:>9,} rows/s  "
            f"ratio {row['ratio']:.2f}"
        )

    print(f"throughput, {ROWS:,} rows, profiles off vs on:")
    measure("sqlite", lambda: sqlite_target(tmp))
    pg = postgres_database()
    if pg is not None:
        import psycopg

        admin, name, params = pg
        try:
            measure("postgres", lambda: psycopg.connect(dbname=name, autocommit=True, **params))
            with psycopg.connect(dbname=name, autocommit=True, **params) as conn:
                start = time.perf_counter()
                conn.execute(SQL_AGGREGATES).fetchone()
                sql_seconds = time.perf_counter() - start
            python_seconds = python_aggregates(source, ROWS)
            results["sql_vs_python"] = {
                "sql_aggregates_after_load_s": round(sql_seconds, 3),
                "python_aggregates_while_streaming_s": round(python_seconds, 3),
                "faster": "sql" if sql_seconds < python_seconds else "python",
            }
            print(
                f"  simple aggregates: SQL after the load {sql_seconds:.3f} s, "
                f"Python while streaming {python_seconds:.3f} s"
            )
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
            admin.close()

    if MEMORY:
        peaks = {}
        for rows in (SMALL, ROWS):
            target = sqlite_target(tmp)
            tracemalloc.start()
            try:
                run(source, target, "sqlite", profiles=True, rows=rows)
                peaks[rows] = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
                target.close()
        results["memory"] = {
            "peak_bytes_small": peaks[SMALL],
            "peak_bytes_large": peaks[ROWS],
            "rows_small": SMALL,
            "rows_large": ROWS,
            "ratio": round(peaks[ROWS] / peaks[SMALL], 2),
        }
        print(
            f"peak memory (tracemalloc), profiles on: {SMALL:,} rows {peaks[SMALL] / 1e6:.2f} MB, "
            f"{ROWS:,} rows {peaks[ROWS] / 1e6:.2f} MB (ratio {results['memory']['ratio']:.2f})"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "profiles.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
