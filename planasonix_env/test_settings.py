"""Test settings: the real settings plus isolation (a private broker folder, fast hashing).

Everything else still comes from the environment, so CI points the suite at PostgreSQL and Redis
with DATABASE_URL and CELERY_BROKER_URL exactly as production would."""

import os
import tempfile
from pathlib import Path

from .settings import *  # noqa: F403
from .settings import CELERY_BROKER_URL, DATABASES

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
CELERY_BEAT_SCHEDULE = {}
# Tests keep their SQLite "warehouses" in temporary folders (tests/egress_support.py's sqlite_root
# gives a test its own; this private default keeps anything else out of a shared /tmp).
SQLITE_CONNECTION_ROOT = os.environ.get("SQLITE_CONNECTION_ROOT") or tempfile.mkdtemp(prefix="planasonix-test-sqlite-")
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="planasonix-test-static-"))
