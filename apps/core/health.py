"""Health of the pieces the application depends on."""

from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.db import connection
from django.utils import timezone

from .models import WorkerHeartbeat


def check_database() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:  # any driver error means "down"
        return False, type(exc).__name__
    return True, "ok"


def check_broker() -> tuple[bool, str]:
    try:
        with current_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
    except Exception as exc:  # kombu raises many transport-specific types
        return False, type(exc).__name__
    return True, "ok"


def check_workers() -> tuple[bool, str]:
    """A worker is 'ok' when one ran the heartbeat task recently."""
    try:
        latest = WorkerHeartbeat.objects.order_by("-seen_at").first()
    except Exception as exc:
        return False, type(exc).__name__
    if latest is None:
        return False, "no heartbeat yet"
    age = timezone.now() - latest.seen_at
    if age > timedelta(seconds=settings.WORKER_HEARTBEAT_STALE_SECONDS):
        return False, f"stale: last heartbeat {int(age.total_seconds())}s ago"
    return True, f"ok: last heartbeat {int(age.total_seconds())}s ago"
