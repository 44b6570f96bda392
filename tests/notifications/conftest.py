"""Fixtures for notifications: a real local HTTP receiver, channels made through the services,
fast retry settings and a bounded poll."""

import json
import socket
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.db import OperationalError, connection

from apps.notifications import services, signing
from apps.notifications.models import ChannelKind

POLL_DEADLINE_SECONDS = 20


def wait_for(predicate, *, timeout: float = POLL_DEADLINE_SECONDS, interval: float = 0.05):
    """Poll until predicate() is truthy (returning its value) or fail after the deadline.

    The SQLite test database is in memory with a shared cache, where a read that meets the worker
    thread's open write transaction fails at once with "database table is locked" (SQLITE_LOCKED
    ignores the busy timeout). That only means "not yet", so the poll tries again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except OperationalError as exc:
            if connection.vendor != "sqlite" or "locked" not in str(exc):
                raise
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class Receiver:
    """A webhook endpoint on 127.0.0.1: answers with scripted statuses (then 200), verifies the
    HMAC signature when given the secret, and records every request."""

    def __init__(self):
        self.statuses: list[int] = []
        self.secret: str | None = None
        self.requests: list[dict] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                verified = None
                if receiver.secret is not None:
                    verified = signing.verify(
                        receiver.secret,
                        headers.get("x-planasonix-timestamp"),
                        body,
                        headers.get("x-planasonix-signature"),
                    )
                with receiver._lock:
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    if receiver.secret is not None and not verified:
                        status = 401
                    receiver.requests.append(
                        {
                            "path": self.path,
                            "headers": headers,
                            "body": body,
                            "json": json.loads(body or b"null"),
                            "verified": verified,
                            "status": status,
                            "delivery": headers.get("x-planasonix-delivery"),
                        }
                    )
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="webhook-receiver", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()

    def received(self) -> list[dict]:
        with self._lock:
            return list(self.requests)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Give SQLite a test database file instead of Django's default shared-cache in-memory one.

    In a shared cache, SQLite locks whole tables and a conflicting access fails at once with
    "database table is locked" (the busy timeout does not apply), so the real worker's threads and
    the test thread trip over each other. A file with WAL and the busy timeout behaves like the
    embedded deployment. (Belongs in planasonix_env/test_settings.py; it only takes effect here when
    this directory's tests are the first to set up the database.)"""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3") and not database.get("TEST", {}).get("NAME"):
        folder = Path(tempfile.mkdtemp(prefix="planasonix-test-db-"))
        database.setdefault("TEST", {})["NAME"] = str(folder / "test.sqlite3")


@pytest.fixture
def receiver(allow_loopback):
    """A receiver on 127.0.0.1, reachable because the operator allow-lists loopback."""
    r = Receiver().start()
    yield r
    r.stop()


@pytest.fixture
def refused_url(allow_loopback):
    """A local URL nobody listens on (connection refused; loopback allow-listed by the operator)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


@pytest.fixture
def fast_retries(settings):
    """Retries within fractions of a second, so a worker test sees them without waiting minutes."""
    settings.DELIVERY_BACKOFF_BASE_SECONDS = 0.05
    settings.DELIVERY_BACKOFF_MAX_SECONDS = 0.2
    settings.DELIVERY_MAX_ATTEMPTS = 5
    settings.WEBHOOK_TIMEOUT_SECONDS = 5
    return settings


@pytest.fixture
def make_channel(org, org_admin):
    """Create a channel through the service: make_channel(kind, target, **kwargs) -> (channel, generated secret)."""

    def make(kind=ChannelKind.WEBHOOK, target="https://hooks.example.com/in", *, name=None, organization=None, **kw):
        make.count += 1
        return services.channel_create(
            actor=kw.pop("actor", org_admin),
            organization=organization or org,
            name=name or f"{kind}-{make.count}",
            kind=kind,
            target=target,
            **kw,
        )

    make.count = 0
    return make
