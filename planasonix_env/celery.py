"""The Celery application. Configuration comes from Django settings (CELERY_* names)."""

import gc
import os

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "planasonix_env.settings")

app = Celery("planasonix_env")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

from apps.core.queue import ensure_broker_folders  # noqa: E402,F401  (re-exported for scripts)


@worker_init.connect
@worker_process_init.connect
def _freeze_loaded_objects(**kwargs) -> None:
    """After the app (and Django) loaded: keep its long-lived objects out of every collection."""
    gc.freeze()
