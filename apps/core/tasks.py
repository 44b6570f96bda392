"""Core tasks."""

import logging
import socket

from celery import shared_task
from celery.signals import worker_ready
from django.utils import timezone

from .models import WorkerHeartbeat

logger = logging.getLogger("planasonix.core")


@shared_task(name="apps.core.tasks.worker_heartbeat", ignore_result=True)
def worker_heartbeat() -> None:
    """Record that a worker is consuming (beat schedules it; /healthz reads it)."""
    WorkerHeartbeat.objects.update_or_create(name=socket.gethostname(), defaults={"seen_at": timezone.now()})


@worker_ready.connect
def _heartbeat_on_start(sender=None, **kwargs):
    """Send a heartbeat through the broker as soon as a worker starts, so /healthz reports it
    within seconds instead of after the first beat interval."""
    try:
        worker_heartbeat.delay()
    except Exception:  # the broker may be down at start; beat will send the next one
        logger.warning("could not send the start-up heartbeat")
