"""/healthz: database and broker decide the status; worker freshness is reported, never fatal."""

from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.core.models import WorkerHeartbeat
from planasonix_env.celery import app as celery_app

pytestmark = pytest.mark.django_db

CLOSED_BROKER = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@contextmanager
def closed_broker(monkeypatch):
    """Point the Celery app's producer connection at a closed port; restored on exit.

    `broker_write_url` is what /healthz connects with; the environment variable outranks the
    configuration, so it is cleared as well (monkeypatch restores it after the test)."""
    monkeypatch.delenv("CELERY_BROKER_WRITE_URL", raising=False)
    previous = celery_app.conf.get("broker_write_url")
    celery_app.conf.broker_write_url = CLOSED_BROKER
    assert celery_app.conf.broker_write_url == CLOSED_BROKER
    try:
        yield
    finally:
        celery_app.conf.broker_write_url = previous


@pytest.fixture
def broker_down(monkeypatch):
    with closed_broker(monkeypatch):
        yield


def heartbeat(age_seconds: float, name: str = "worker@host") -> WorkerHeartbeat:
    return WorkerHeartbeat.objects.create(name=name, seen_at=timezone.now() - timedelta(seconds=age_seconds))


def test_healthy_when_database_and_broker_are_up(client):
    heartbeat(5)
    response = client.get("/healthz")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"] == {"ok": True, "detail": "ok"}
    assert body["checks"]["broker"] == {"ok": True, "detail": "ok"}
    assert body["checks"]["worker"]["ok"] is True
    assert response["Cache-Control"].startswith("max-age=0")


def test_needs_no_credentials_and_only_answers_get(client):
    assert client.get("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_broker_down_is_503(client, broker_down):
    heartbeat(5)
    response = client.get("/healthz")
    assert response.status_code == 503, response.content
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["broker"]["ok"] is False
    assert body["checks"]["broker"]["detail"] != "ok"
    assert body["checks"]["database"]["ok"] is True
    # The detail is an exception class name, never a URL or a message that could carry credentials.
    assert CLOSED_BROKER not in response.content.decode()


def test_broker_override_is_undone(client, monkeypatch):
    original = celery_app.conf.broker_write_url
    with closed_broker(monkeypatch):
        assert client.get("/healthz").status_code == 503
    assert celery_app.conf.broker_write_url == original
    assert client.get("/healthz").status_code == 200


def test_fresh_heartbeat_is_ok(client, settings):
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 120
    heartbeat(10)
    worker = client.get("/healthz").json()["checks"]["worker"]
    assert worker["ok"] is True
    assert worker["detail"].startswith("ok")


def test_latest_heartbeat_counts(client, settings):
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 120
    heartbeat(3600, name="old-worker")
    heartbeat(10, name="new-worker")
    assert client.get("/healthz").json()["checks"]["worker"]["ok"] is True


def test_stale_heartbeat_is_reported_but_not_fatal(client, settings):
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 120
    heartbeat(600)
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["worker"]["ok"] is False
    assert body["checks"]["worker"]["detail"].startswith("stale")


def test_missing_heartbeat_is_reported_but_not_fatal(client):
    assert not WorkerHeartbeat.objects.exists()
    response = client.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["worker"] == {"ok": False, "detail": "no heartbeat yet"}


def test_stale_threshold_comes_from_settings(client, settings):
    heartbeat(300)
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 600
    assert client.get("/healthz").json()["checks"]["worker"]["ok"] is True
    settings.WORKER_HEARTBEAT_STALE_SECONDS = 60
    assert client.get("/healthz").json()["checks"]["worker"]["ok"] is False
