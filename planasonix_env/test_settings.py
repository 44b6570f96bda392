"""Test settings: the real settings plus isolation (a private broker folder, fast hashing).

Everything else still comes from the environment, so CI points the suite at PostgreSQL and Redis
with DATABASE_URL, CELERY_BROKER_URL and CACHE_URL exactly as production would.

Under pytest-xdist every worker process (PYTEST_XDIST_WORKER=gw0, gw1, ...) is its own island:
pytest-django gives it its own test database, the folders below are made per process, and on a
shared Redis its Celery keys (queue included) and cache keys carry the worker's name, so one Redis
database each for broker and cache serves any number of workers."""

import os
import tempfile
from pathlib import Path

from .settings import *  # noqa: F403
from .settings import CACHES, CELERY_BROKER_TRANSPORT_OPTIONS, CELERY_BROKER_URL, DATABASES, celery_queues

# "gw0", "gw1", ... under pytest-xdist; "main" otherwise. Subprocesses a test starts inherit it.
TEST_WORKER = os.environ.get("PYTEST_XDIST_WORKER") or "main"

# SQLite's default test database is a shared in-memory one, on which a real worker's threads get
# "database table is locked" instead of waiting; a temporary file behaves like the real thing.
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": str(Path(tempfile.mkdtemp(prefix="planasonix-test-db-")) / "test.sqlite3")}

# Each test closes what it opened (threads, live servers, workers): no connection outlives a test.
DATABASES["default"]["CONN_MAX_AGE"] = 0

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# django-axes stays on (tests/core/test_security.py locks accounts out): its records live in the test
# database, so every test starts with none, and force_login never counts as an attempt.

if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker = Path(tempfile.mkdtemp(prefix="planasonix-test-broker-"))
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker / "queue"),
        "data_folder_out": str(_broker / "queue"),
        "control_folder": str(_broker / "control"),
        "processed_folder": str(_broker / "processed"),
        "store_processed": False,
    }
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Queues, unacked messages and broadcast bindings live under one key prefix per worker.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        **CELERY_BROKER_TRANSPORT_OPTIONS,
        "global_keyprefix": f"pnx-test-{TEST_WORKER}:",
    }
CELERY_TASK_DEFAULT_QUEUE = f"pnx-test-{TEST_WORKER}"
NOTIFICATIONS_QUEUE = f"pnx-test-{TEST_WORKER}-notifications"
CELERY_TASK_QUEUES, CELERY_TASK_ROUTES = celery_queues(CELERY_TASK_DEFAULT_QUEUE, NOTIFICATIONS_QUEUE)
CELERY_BEAT_SCHEDULE = {}

if CACHES["default"]["BACKEND"] == "apps.core.cache.ReusedClientRedisCache":
    # clear() deletes only this worker's keys instead of flushing the database the others share.
    CACHES["default"]["BACKEND"] = "planasonix_env.test_cache.PrefixedRedisCache"
    CACHES["default"]["KEY_PREFIX"] = f"pnx-test-{TEST_WORKER}"

# Tests keep their SQLite "warehouses" in temporary folders (tests/egress_support.py's sqlite_root
# gives a test its own; this private default keeps anything else out of a shared /tmp).
SQLITE_CONNECTION_ROOT = os.environ.get("SQLITE_CONNECTION_ROOT") or tempfile.mkdtemp(prefix="planasonix-test-sqlite-")
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="planasonix-test-static-"))

# Tests build real repositories on disk and fetch them through file:// URLs.
GIT_MIRROR_ROOT = tempfile.mkdtemp(prefix="planasonix-test-git-")
GIT_ALLOW_LOCAL_URLS = True
