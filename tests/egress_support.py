"""Test fixtures for the egress policy and SQLite confinement (imported by package conftests).

Tests that connect to 127.0.0.1 (the local PostgreSQL, a webhook receiver, an HTTP server) opt in
through the operator's allow-list, exactly as an operator would; SQLite files live in their
environment's own folder under a per-test root."""

import ipaddress

import pytest

from apps.connections.targets import sqlite_folder
from apps.core import egress

LOOPBACK = ["127.0.0.1/32", "::1/128"]


@pytest.fixture
def allow_loopback(settings):
    """The operator allow-lists loopback (EGRESS_ALLOW), as a single-host install would."""
    settings.EGRESS_ALLOW = [*LOOPBACK]
    return settings.EGRESS_ALLOW


@pytest.fixture
def sqlite_root(settings, tmp_path):
    """A private SQLITE_CONNECTION_ROOT for this test."""
    root = tmp_path / "sqlite-root"
    root.mkdir()
    settings.SQLITE_CONNECTION_ROOT = str(root)
    return root


def sqlite_file(environment, name: str):
    """The path of `name` in `environment`'s SQLite folder (created)."""
    folder = sqlite_folder(environment)
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


@pytest.fixture
def dns(monkeypatch):
    """A resolver the test controls: dns["name"] = ["10.0.0.1"]; names not in it do not resolve.
    Changing an entry after a save plays a DNS change before the connection is made."""
    table: dict[str, list[str]] = {}

    def resolve(host, port):
        literal = egress._literal(host)
        if literal is not None:
            return [literal]
        if host not in table:
            raise OSError(f"{host} does not resolve")
        return [egress.normalize(ipaddress.ip_address(a)) for a in table[host]]

    monkeypatch.setattr(egress, "resolve_addresses", resolve)
    return table


@pytest.fixture
def network_platform(settings, monkeypatch):
    """The platform's database, broker, cache and SMTP server on the network, as production has
    them (added to whatever this test run itself uses: PostgreSQL/Redis in CI)."""
    monkeypatch.setitem(
        settings.DATABASES,
        "egress_platform",
        {"ENGINE": "django.db.backends.postgresql", "HOST": "10.20.0.5", "PORT": "5432", "NAME": "planasonix"},
    )
    monkeypatch.setitem(
        settings.CACHES,
        "egress_platform",
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://10.20.0.7:6380/1"},
    )
    settings.CELERY_BROKER_URL = "redis://broker.internal:6379/0"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "10.20.0.8", 587
    return settings
