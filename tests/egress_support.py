"""Test fixtures for the egress policy and SQLite confinement (imported by package conftests).

Tests that connect to 127.0.0.1 (the local PostgreSQL, a webhook receiver, an HTTP server) opt in
through the operator's allow-list, exactly as an operator would; SQLite files live in their
environment's own folder under a per-test root."""

import pytest

from apps.connections.targets import sqlite_folder

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
