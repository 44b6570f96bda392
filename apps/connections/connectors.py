"""Reachability checks per connection kind (used by the "test connection" task)."""

import sqlite3
from contextlib import closing

import requests

SUPPORTED = ("postgres", "sqlite", "http")


def check(kind: str, params: dict, password: str | None) -> tuple[bool, str]:
    """Connect for real and return (ok, message). Messages never contain the password."""
    try:
        if kind == "postgres":
            return _postgres(params, password)
        if kind == "sqlite":
            return _sqlite(params)
        if kind == "http":
            return _http(params)
    except Exception as exc:  # report the failure kind and a scrubbed message
        return False, _scrub(f"{type(exc).__name__}: {exc}", password)
    return False, f"Testing {kind} connections is not supported here (supported: {', '.join(SUPPORTED)})."


def _scrub(message: str, password: str | None) -> str:
    if password:
        message = message.replace(password, "***")
    return message[:500]


def _postgres(params: dict, password: str | None) -> tuple[bool, str]:
    import psycopg

    with psycopg.connect(
        host=params["host"],
        port=params.get("port", 5432),
        dbname=params["database"],
        user=params.get("user"),
        password=password,
        sslmode=params.get("sslmode", "prefer"),
        connect_timeout=params.get("connect_timeout", 5),
    ) as conn:
        version = conn.execute("SHOW server_version").fetchone()[0]
    return True, f"Connected to PostgreSQL {version}."


def _sqlite(params: dict) -> tuple[bool, str]:
    from .schemas import sqlite_path

    path = sqlite_path(params["path"])
    if not path.is_file():
        return False, f"No SQLite database at {path}."
    # `SELECT 1` never reads the file, so any file would pass; reading the schema checks that the
    # file is a SQLite database. closing(): sqlite3's own context manager commits but never closes.
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return True, f"Opened SQLite database {path.name}."


def _http(params: dict) -> tuple[bool, str]:
    response = requests.get(
        params["base_url"],
        timeout=params.get("timeout_seconds", 10),
        verify=params.get("verify_tls", True),
        allow_redirects=False,
    )
    ok = response.status_code < 500
    return ok, f"HTTP {response.status_code} from {params['base_url']}."
