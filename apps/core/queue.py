"""Waking workers: the one way a service hands work to Celery.

The database row is always the truth (a queued run, a pending delivery, an approved request); a
task message is only the wake-up. So sending is best effort: when the broker is down the failure is
logged and a beat sweep finds the row later. Services send from `transaction.on_commit`, so a
worker never wakes up before the row it is told about exists.

Tasks are named or passed as task objects; by name (`"apps.resolution.tasks.test_connection"`) a
lower app can wake a task that lives in an app above it without importing it."""

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings

logger = logging.getLogger("planasonix.queue")


def enqueue(task: Any, args: Sequence[Any], countdown: float | None = None) -> bool:
    """Send `task` (a task object or a registered task name) now; False when the broker refused."""
    name = task if isinstance(task, str) else task.name
    try:
        if isinstance(task, str):
            current_app.send_task(task, args=list(args), countdown=countdown)
        else:
            task.apply_async(args=list(args), countdown=countdown)
    except Exception:  # any transport error: the row is the truth and the sweep picks the work up
        logger.warning("could not enqueue %s; the sweep will pick the work up", name)
        return False
    return True


def ensure_broker_folders() -> None:
    """The filesystem transport (the embedded default) needs its folders to exist."""
    if not str(getattr(settings, "CELERY_BROKER_URL", "") or "").startswith("filesystem://"):
        return
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        folder = options.get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)
