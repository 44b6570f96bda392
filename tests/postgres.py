"""PostgreSQL in the tests: which server scratch "warehouse" databases go to, and the rule for tests
that need PostgreSQL.

The server is the one DATABASE_URL names when it is PostgreSQL (CI and the PostgreSQL lane), else
TEST_POSTGRES_URL, by default postgres://postgres@127.0.0.1:5432/postgres. A test that needs
PostgreSQL skips without it, except with REQUIRE_POSTGRES=1 (set by .ci/run), where it fails."""

import os
import uuid
from contextlib import contextmanager

import environ
import pytest

DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/postgres"
POSTGRES_SCHEMES = ("postgres://", "postgresql://", "pgsql://")


def server() -> dict:
    """The server as executor/psycopg connection parameters (host, port, user[, password])."""
    url = os.environ.get("DATABASE_URL", "")
    if not url.startswith(POSTGRES_SCHEMES):
        url = os.environ.get("TEST_POSTGRES_URL") or DEFAULT_URL
    config = environ.Env.db_url_config(url)
    params = {
        "host": config.get("HOST") or "127.0.0.1",
        "port": int(config.get("PORT") or 5432),
        "user": config.get("USER") or "postgres",
    }
    if config.get("PASSWORD"):
        params["password"] = config["PASSWORD"]
    return params


def where() -> str:
    params = server()
    return f"PostgreSQL at {params['host']}:{params['port']} (user {params['user']})"


def require(reason: str) -> None:
    """Skip a test that cannot run without PostgreSQL, or fail it under REQUIRE_POSTGRES=1."""
    if os.environ.get("REQUIRE_POSTGRES") == "1":
        pytest.fail(f"{reason}; REQUIRE_POSTGRES=1 (CI) does not let PostgreSQL tests skip")
    pytest.skip(reason)


def require_test_database(connection, why: str) -> None:
    """For tests that need the test database itself on PostgreSQL (row locks, races)."""
    if connection.vendor != "postgresql":
        require(f"{why} (the test database is {connection.vendor})")


def connect(dbname: str = "postgres", **options):
    """A psycopg connection to the server (autocommit), or require() when it does not answer."""
    import psycopg

    try:
        return psycopg.connect(dbname=dbname, autocommit=True, connect_timeout=3, **server(), **options)
    except psycopg.OperationalError as exc:
        require(f"{where()} is unreachable: {exc}")


@contextmanager
def scratch_database(prefix: str, *, timezone: str | None = None):
    """A database of its own on the server (unique per process and call, so parallel workers and
    suites never meet), dropped afterwards; yields its connection parameters."""
    name = f"{prefix}_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    with connect() as admin:
        admin.execute(f"CREATE DATABASE {name}")
        if timezone:
            admin.execute(f"ALTER DATABASE {name} SET timezone TO '{timezone}'")
        try:
            yield {**server(), "database": name}
        finally:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
