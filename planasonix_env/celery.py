"""The Celery application. Configuration comes from Django settings (CELERY_* names)."""

import gc
import os
from pathlib import Path

from celery import Celery
from celery.signals import worker_init, worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "planasonix_env.settings")

app = Celery("planasonix_env")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


def ensure_broker_folders() -> None:
    """The filesystem transport (embedded default) needs its folders to exist."""
    if not str(app.conf.broker_url or "").startswith("filesystem://"):
        return
    for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
        folder = (app.conf.broker_transport_options or {}).get(key)
        if folder:
            Path(folder).mkdir(parents=True, exist_ok=True)


@worker_init.connect
@worker_process_init.connect
def _freeze_loaded_objects(**kwargs) -> None:
    """After the app (and Django) loaded: keep its long-lived objects out of every collection."""
    gc.freeze()
