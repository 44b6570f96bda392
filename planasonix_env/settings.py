"""Settings for Planasonix Environments.

Every value comes from the environment (12-factor, django-environ); `.env.example` documents each
one. The defaults give the embedded set-up: SQLite and a filesystem Celery broker under `var/`,
local-memory cache and console email. Nothing in the code branches on embedded vs production.
"""

import base64
import hashlib
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
VAR_DIR = Path(env.str("PLANASONIX_VAR_DIR", default=str(BASE_DIR / "var")))

# --- core -----------------------------------------------------------------------------------
DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="insecure-embedded-default-change-me-in-production")
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env.bool("DJANGO_BEHIND_TLS_PROXY", False) else None
SITE_URL = env.str("PLANASONIX_SITE_URL", default="http://127.0.0.1:8000")

INSTALLED_APPS = [
    "apps.core.admin_site.PlanasonixAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "guardian",
    "simple_history",
    "apps.core",
    "apps.tenancy",
    "apps.notifications",
    "apps.environments",
    "apps.secrets",
    "apps.pipelines",
    "apps.variables",
    "apps.connections",
    "apps.resolution",
    "apps.runs",
    "apps.approvals",
    "apps.web",
    "apps.demo",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.RejectNulBytesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
]

ROOT_URLCONF = "planasonix_env.urls"
WSGI_APPLICATION = "planasonix_env.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- database -------------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and beat share one file: wait for locks, take the write lock up front and use
    # WAL so that readers never block the writer.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 30,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        }
    )
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache and email ------------------------------------------------------------------------
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://planasonix")}
vars().update(env.email("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Planasonix <noreply@planasonix.local>")

# --- auth, permissions ----------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# The web screens' sign-in (the admin keeps its own at /admin/login/).
LOGIN_URL = "web:login"
LOGIN_REDIRECT_URL = "web:inbox"
LOGOUT_REDIRECT_URL = "web:login"
GUARDIAN_RAISE_403 = False
GUARDIAN_MONKEY_PATCH_USER = False

# --- i18n, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

# Request bodies beyond this are refused with 400 (Django raises RequestDataTooBig).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=1_048_576)

# --- audit ----------------------------------------------------------------------------------
SIMPLE_HISTORY_DATE_INDEX = "Composite"
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

# --- secrets at rest ------------------------------------------------------------------------
# Fernet keys, newest first: the first encrypts, all decrypt (rotation). Without the setting a key
# is derived from SECRET_KEY so the embedded default works; production must set it (system check).
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])
if not FIELD_ENCRYPTION_KEYS:
    FIELD_ENCRYPTION_KEYS = [base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()]
    FIELD_ENCRYPTION_KEYS_DERIVED = True
else:
    FIELD_ENCRYPTION_KEYS_DERIVED = False

# External secret providers: {"name": "dotted.path.ProviderClass"} (see apps/secrets/providers.py).
SECRET_PROVIDERS = env.dict("SECRET_PROVIDERS", default={})
# `env` secrets may only name worker environment variables with this prefix.
SECRET_ENV_PREFIX = env.str("SECRET_ENV_PREFIX", default="PNX_SECRET_")

# --- REST API -------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "apps.tenancy.authentication.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["apps.core.api.IsAuthenticatedWithScope"],
    "DEFAULT_THROTTLE_CLASSES": ["apps.tenancy.throttling.PrincipalRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {
        "api_key": env.str("API_THROTTLE_RATE_KEY", default="600/minute"),
        "user": env.str("API_THROTTLE_RATE_USER", default="1200/minute"),
        "anon": env.str("API_THROTTLE_RATE_ANON", default="60/minute"),
    },
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "apps.core.api.StrictFilterBackend",
        "rest_framework.filters.OrderingFilter",
        "apps.core.api.StrictSearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "apps.core.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.StrictJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Planasonix Environments API",
    "DESCRIPTION": "Environments, per-stage configuration, promotions and approvals.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "EnvironmentKindEnum": "apps.environments.models.Kind",
        "ChannelKindEnum": "apps.notifications.models.ChannelKind",
        "FreezeKindEnum": "apps.environments.models.FreezeKind",
        "ConnectionKindEnum": "apps.connections.models.ConnectionKind",
    },
    "APPEND_COMPONENTS": {
        "securitySchemes": {"ApiKeyAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "pnx_<prefix>_<secret>"}}
    },
    "SECURITY": [{"ApiKeyAuth": []}, {"cookieAuth": []}],
    # Every operation documents the one error shape for the 4xx/5xx statuses it can answer.
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "apps.core.api_errors.document_error_responses",
        "apps.core.api.document_query_parameters",
    ],
}
API_KEY_LAST_USED_RESOLUTION_SECONDS = env.int("API_KEY_LAST_USED_RESOLUTION_SECONDS", default=60)

# --- Celery ---------------------------------------------------------------------------------
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_FOLDER = VAR_DIR / "broker"
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_FOLDER / "queue"),
        "data_folder_out": str(BROKER_FOLDER / "queue"),
        "control_folder": str(BROKER_FOLDER / "control"),
        "processed_folder": str(BROKER_FOLDER / "processed"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT", default=3600)}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_RESULT_BACKEND = env.str("CELERY_RESULT_BACKEND", default=None)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = TIME_ZONE
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "apps.core.tasks.worker_heartbeat", "schedule": 30.0},
    "notifications-sweep-deliveries": {"task": "apps.notifications.tasks.sweep_deliveries", "schedule": 60.0},
    "runs-fire-schedules": {"task": "apps.runs.tasks.fire_schedules", "schedule": 30.0},
    "runs-sweep": {"task": "apps.runs.tasks.sweep_runs", "schedule": 60.0},
    "connection-tests-sweep": {"task": "apps.resolution.tasks.sweep_connection_tests", "schedule": 120.0},
    "promotions-sweep": {"task": "apps.approvals.tasks.sweep_promotions", "schedule": 60.0},
    "promotions-remind": {"task": "apps.approvals.tasks.remind_approvers", "schedule": 3600.0},
    "promotions-watch": {"task": "apps.approvals.tasks.watch_deployments", "schedule": 60.0},
}
# A worker that has not written a heartbeat for this long is reported as stale by /healthz.
WORKER_HEARTBEAT_STALE_SECONDS = env.int("WORKER_HEARTBEAT_STALE_SECONDS", default=120)

# SQLite connection bindings may only use files under this folder (never the platform's database).
SQLITE_CONNECTION_ROOT = env.str("SQLITE_CONNECTION_ROOT", default=str(VAR_DIR / "demo"))

# --- runs -----------------------------------------------------------------------------------
# A running run's worker renews its lease between batches; a lease that runs out means the worker
# died, and the sweep queues the run again (up to RUN_MAX_ATTEMPTS).
RUN_LEASE_SECONDS = env.int("RUN_LEASE_SECONDS", default=300)
RUN_MAX_ATTEMPTS = env.int("RUN_MAX_ATTEMPTS", default=3)
# A queued run not picked up within this many seconds is dispatched again by the sweep.
RUN_DISPATCH_GRACE_SECONDS = env.int("RUN_DISPATCH_GRACE_SECONDS", default=120)
# Rows read per source by a run that asks for a sample in an environment whose policy does not sample.
RUN_DEFAULT_SAMPLE_ROWS = env.int("RUN_DEFAULT_SAMPLE_ROWS", default=1000)
# A staging validation passes when its row count is within this percentage of the baseline's.
BASELINE_ROW_TOLERANCE_PERCENT = env.float("BASELINE_ROW_TOLERANCE_PERCENT", default=5.0)

# --- promotions -----------------------------------------------------------------------------
# A deploying promotion whose worker has not finished within this many seconds is taken over.
PROMOTION_LEASE_SECONDS = env.int("PROMOTION_LEASE_SECONDS", default=120)
# An approved promotion still not deployed this many seconds after it was due is queued again.
PROMOTION_DISPATCH_GRACE_SECONDS = env.int("PROMOTION_DISPATCH_GRACE_SECONDS", default=60)
# Approvers are reminded of a request pending longer than this (and again after each interval).
PROMOTION_REMIND_AFTER_HOURS = env.int("PROMOTION_REMIND_AFTER_HOURS", default=24)

# --- notifications --------------------------------------------------------------------------
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10.0)
DELIVERY_MAX_ATTEMPTS = env.int("DELIVERY_MAX_ATTEMPTS", default=8)
DELIVERY_BACKOFF_BASE_SECONDS = env.int("DELIVERY_BACKOFF_BASE_SECONDS", default=30)
DELIVERY_BACKOFF_MAX_SECONDS = env.int("DELIVERY_BACKOFF_MAX_SECONDS", default=3600)
DELIVERY_LEASE_SECONDS = env.int("DELIVERY_LEASE_SECONDS", default=120)

# --- logging --------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.middleware.RequestIdLogFilter"}},
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
