"""Where a binding's params point, checked against the egress policy (apps.core.egress) and, for
SQLite, confined to the environment's own folder. Called when a binding is saved, when it is
resolved, and right before anything connects (connection tests, the executor), which open PostgreSQL
through `postgres_connect`: to the address the policy checked."""

import os
from pathlib import Path, PurePath

from django.conf import settings

from apps.core import egress

from .schemas import TEMPLATE


def _refuse(field: str, message: str) -> egress.EgressRefused:
    return egress.EgressRefused(f"{field}: {message}", fields={field: [message]})


def sqlite_folder(environment) -> Path:
    """The one folder an environment's SQLite bindings may use: a tenant's binding must not open
    another environment's, another organization's or the platform's files."""
    root = Path(os.path.realpath(settings.SQLITE_CONNECTION_ROOT))
    return root / f"org-{environment.organization_id}" / f"env-{environment.pk}"


def sqlite_path(raw, *, environment) -> Path:
    """The file a sqlite binding's `path` names: relative to the environment's folder, or an absolute
    path inside it. `..`, `~` and symbolic links are refused (a link could point anywhere)."""
    field = "params.path"
    folder = sqlite_folder(environment)
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise _refuse(field, "Give a file name.")
    given = PurePath(raw)
    if ".." in given.parts or raw.startswith("~"):
        raise _refuse(field, "'..' and '~' are not allowed in SQLite paths.")
    if given.is_absolute():
        lexical = Path(os.path.normpath(raw))
        # The folder as configured and as resolved (the root itself may sit behind a link, e.g. /tmp).
        as_configured = Path(os.path.abspath(settings.SQLITE_CONNECTION_ROOT)) / folder.parent.name / folder.name
        for base in (folder, as_configured):
            if base in lexical.parents:
                relative = lexical.relative_to(base)
                break
        else:
            raise _refuse(field, f"SQLite files of this environment live in {folder}; give a name relative to it.")
    else:
        relative = Path(os.path.normpath(raw))
    if relative == Path("."):
        raise _refuse(field, "Give a file name, not the folder.")
    path = folder / relative
    if os.path.realpath(path) != str(path):
        raise _refuse(field, "Symbolic links are not allowed in SQLite paths.")
    platform = settings.DATABASES["default"]
    for name in filter(None, {platform.get("NAME"), (platform.get("TEST") or {}).get("NAME")}):
        base = Path(os.path.realpath(str(name)))
        if path in (base, Path(f"{base}-wal"), Path(f"{base}-shm"), Path(f"{base}-journal")):
            raise _refuse(field, "That is the platform's own database.")
    return path


def _templated(value) -> bool:
    return isinstance(value, str) and bool(TEMPLATE.search(value))


def check_params(kind: str, params: dict, *, environment, connect: bool = False, dns: bool = True) -> list:
    """Refuse (EgressRefused naming the param) params whose target the policy does not allow.

    Values still holding `{{ variable }}` are skipped (saving a binding; they are checked once
    resolved). Returns the checked addresses of the network target, if any, so that the caller can
    connect to exactly those."""
    if kind == "sqlite":
        if not _templated(params.get("path")):
            sqlite_path(params.get("path"), environment=environment)
        return []
    if kind in ("postgres", "mysql"):
        host, port, database = params.get("host"), params.get("port"), params.get("database")
        if _templated(host) or _templated(port) or _templated(database):
            return []
        if isinstance(database, str) and ("=" in database or "://" in database):
            # libpq reads a database name holding '=' or a URI as a whole connection string.
            raise _refuse("params.database", "A database name, not a connection string.")
        return egress.check_target(
            kind,
            host,
            port,
            organization=environment.organization,
            field="params.host",
            database=database,
            connect=connect,
            dns=dns,
        )
    url_param = {"http": "base_url", "s3": "endpoint_url"}.get(kind)
    if url_param and params.get(url_param) is not None and not _templated(params[url_param]):
        return egress.check_url(
            params[url_param],
            organization=environment.organization,
            field=f"params.{url_param}",
            schemes=("https", "http"),
            connect=connect,
            dns=dns,
        )
    return []


def postgres_connect(params: dict, password: str | None, addresses: list, *, default_timeout: int, **options):
    """A psycopg connection for checked postgres params, to the address the egress policy checked
    (`addresses[0]`, from `check_params(..., connect=True)`), not a fresh lookup; `options` go to
    psycopg (e.g. autocommit)."""
    import psycopg

    return psycopg.connect(
        host=params["host"],
        hostaddr=str(addresses[0]),
        port=params.get("port", 5432),
        dbname=params["database"],
        user=params.get("user"),
        password=password,
        sslmode=params.get("sslmode", "prefer"),
        connect_timeout=params.get("connect_timeout", default_timeout),
        **options,
    )
