"""Reachability checks per connection kind (used by the "test connection" task)."""

import sqlite3
from contextlib import closing
from pathlib import Path

from apps.core.egress import EgressRefused
from apps.core.egress_http import pinned_request

from .targets import check_params, postgres_connect, sqlite_path

SUPPORTED = ("postgres", "sqlite", "http")


def check(kind: str, params: dict, password: str | None, *, environment) -> tuple[bool, str]:
    """Connect for real and return (ok, message). Messages never contain the password. The target
    is checked against the egress policy first, on the addresses it resolves to now."""
    try:
        addresses = check_params(kind, params, environment=environment, connect=True)
        if kind == "postgres":
            return _postgres(params, password, addresses)
        if kind == "sqlite":
            return _sqlite(sqlite_path(params["path"], environment=environment))
        if kind == "http":
            return _http(params, addresses)
    except EgressRefused as exc:
        return False, f"Refused by the egress policy: {exc.message}"
    except Exception as exc:  # report the failure kind and a scrubbed message
        return False, _scrub(f"{type(exc).__name__}: {exc}", password)
    return False, f"Testing {kind} connections is not supported here (supported: {', '.join(SUPPORTED)})."


def _scrub(message: str, password: str | None) -> str:
    if password:
        message = message.replace(password, "***")
    return message[:500]


def _postgres(params: dict, password: str | None, addresses: list) -> tuple[bool, str]:
    with postgres_connect(params, password, addresses, default_timeout=5) as conn:
        row = conn.execute("SHOW server_version").fetchone()
    version = row[0] if row else "(version unknown)"
    return True, f"Connected to PostgreSQL {version}."


def _sqlite(path: Path) -> tuple[bool, str]:
    if not path.is_file():
        return False, f"No SQLite database at {path}."
    # `SELECT 1` never reads the file, so any file would pass; reading the schema checks that the
    # file is a SQLite database. closing(): sqlite3's own context manager commits but never closes.
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as conn:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return True, f"Opened SQLite database {path.name}."


def _http(params: dict, addresses: list) -> tuple[bool, str]:
    response = pinned_request(  # to the address the egress policy checked, not a fresh lookup
        "GET",
        params["base_url"],
        addresses=addresses,
        timeout=params.get("timeout_seconds", 10),
        verify=params.get("verify_tls", True),
    )
    ok = response.status_code < 500
    return ok, f"HTTP {response.status_code} from {params['base_url']}."
