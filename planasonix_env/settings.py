"""Settings for Planasonix Environments.

Every value comes from the environment (12-factor, django-environ); `.env.example` documents each
one. The defaults give the embedded set-up: SQLite and a filesystem Celery broker under `var/`,
local-memory cache and console email. Nothing in the code branches on embedded vs production.
"""

import base64
import hashlib
import ipaddress
from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF
from kombu import Exchange, Queue

from .api_docs import API_TAGS

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
# HTTPS only, once TLS is in place (`manage.py check --deploy` is clean with all of these set).
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=False)
# A load balancer probes /healthz over plain HTTP: never redirect it.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SITE_URL = env.str("PLANASONIX_SITE_URL", default="http://127.0.0.1:8000")
# The address(es) the web processes listen on (the Procfile's `--bind ${WEB_BIND}`, space-separated):
# with SITE_URL, never a valid egress target (apps/core/egress.py), so no binding or webhook calls the platform.
WEB_BIND = env.str("WEB_BIND", default="127.0.0.1:8000")

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
    "drf_spectacular_sidecar",
    "guardian",
    "simple_history",
    "axes",
    "csp",
    "apps.core",
    "apps.tenancy",
    "apps.notifications",
    "apps.environments",
    "apps.secrets",
    "apps.pipelines",
    "apps.repositories",
    "apps.variables",
    "apps.connections",
    "apps.resolution",
    "apps.runs",
    "apps.approvals",
    "apps.audit",
    "apps.insights",
    "apps.web",
    "apps.demo",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.RejectNulBytesMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "apps.core.middleware.ContentSecurityPolicyMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    # Last, as django-axes requires: it turns a locked-out sign-in into the lockout page.
    "axes.middleware.AxesMiddleware",
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
    # Persistent connections (checked before reuse): a new PostgreSQL connection per request costs
    # more than most requests (measured 2.2x the floor's throughput). Tests set 0.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("DATABASE_CONN_HEALTH_CHECKS", default=True)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- cache and email ------------------------------------------------------------------------
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://planasonix")}
if CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    CACHES["default"]["BACKEND"] = "apps.core.cache.ReusedClientRedisCache"  # one client per pool, not per call
vars().update(env.email("EMAIL_URL", default="consolemail://"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Planasonix <noreply@planasonix.local>")

# --- auth, permissions ----------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    # First: refuses every sign-in (right password or not) while the account or address is locked out.
    "axes.backends.AxesStandaloneBackend",
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

# Sign-in lockout (django-axes) on every password sign-in: /accounts/login/, /admin/login/ and
# /api-auth/login/. After LOGIN_FAILURE_LIMIT failures an account (whatever the address) and an
# address (whatever the account) are locked out for LOGIN_COOLOFF_MINUTES; a failure during the
# lockout starts the cool-off again; a successful sign-in clears the account's failures. Every
# attempt is recorded (AccessAttempt, AccessFailureLog, AccessLog), read-only in the admin for
# superusers; `manage.py axes_reset_username NAME` / `axes_reset_ip ADDRESS` lift a lockout early.
AXES_ENABLED = env.bool("LOGIN_LOCKOUT_ENABLED", default=True)
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_COOLOFF_MINUTES", default=15))
# Each item locks out on its own; "username+ip_address" locks only that pair.
AXES_LOCKOUT_PARAMETERS = [
    item.split("+") if "+" in item else item
    for item in env.list("LOGIN_LOCKOUT_PARAMETERS", default=["username", "ip_address"])
]
AXES_RESET_ON_SUCCESS = True
# Every failure is kept in AccessFailureLog (the newest 1,000 per account), successes in AccessLog.
AXES_ENABLE_ACCESS_FAILURE_LOG = True
AXES_ACCESS_FAILURE_LOG_PER_USER_LIMIT = 1000
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = True
AXES_LOCKOUT_CALLABLE = "apps.core.views.locked_out"
AXES_ENABLE_ADMIN = False  # registered read-only, for superusers, in apps/core/admin.py
# The client address, one answer for lockouts and API throttles (DRF's, with NUM_PROXIES below).
AXES_CLIENT_IP_CALLABLE = "apps.tenancy.throttling.client_address"

# --- Content-Security-Policy (django-csp) ---------------------------------------------------------
# Strict: scripts, styles, fonts and fetches from this origin only; no inline script anywhere, no
# plugins, no framing. Third-party screens whose templates carry inline style attributes (the admin,
# the browsable API, the API docs) get inline styles only (CSP_INLINE_STYLE_PATH_PREFIXES); the API
# docs are served from installed packages (drf-spectacular-sidecar), so they need no other origin.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [NONE],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}
CSP_INLINE_STYLE_PATH_PREFIXES = ["/admin/", "/api/", "/api-auth/"]
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
        # Wrong, expired or revoked API keys per client address (counted before the key is checked).
        "api_key_failure": env.str("API_THROTTLE_RATE_KEY_FAILURE", default="20/minute"),
    },
    "DEFAULT_PAGINATION_CLASS": "apps.core.api.Pagination",
    "PAGE_SIZE": 50,
    "DEFAULT_FILTER_BACKENDS": [
        "apps.core.api.StrictFilterBackend",
        "apps.core.api.StrictOrderingFilter",
        "apps.core.api.StrictSearchFilter",
    ],
    "DEFAULT_SCHEMA_CLASS": "apps.core.openapi.AutoSchema",  # documents every error status (one place)
    "EXCEPTION_HANDLER": "apps.core.api_errors.exception_handler",
    "DEFAULT_RENDERER_CLASSES": [
        "rest_framework.renderers.JSONRenderer",
        "rest_framework.renderers.BrowsableAPIRenderer",
    ],
    "DEFAULT_PARSER_CLASSES": ["apps.core.parsers.StrictJSONParser"],
    "TEST_REQUEST_DEFAULT_FORMAT": "json",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Proxies in front of the web processes that append to X-Forwarded-For: the client address is
    # the Nth from the right. 0: REMOTE_ADDR (a client-sent X-Forwarded-For is never believed).
    "NUM_PROXIES": env.int("DJANGO_TRUSTED_PROXY_COUNT", default=0),
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Planasonix Environments API",
    "DESCRIPTION": "Environments, per-stage configuration, promotions and approvals.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    # No validator badge: it would load an image from validator.swagger.io.
    "SWAGGER_UI_SETTINGS": {"deepLinking": True, "validatorUrl": None},
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "ENUM_NAME_OVERRIDES": {
        "EnvironmentKindEnum": "apps.environments.models.Kind",
        "ChannelKindEnum": "apps.notifications.models.ChannelKind",
        "FreezeKindEnum": "apps.environments.models.FreezeKind",
        "ConnectionKindEnum": "apps.connections.models.ConnectionKind",
        "RunStatusEnum": "apps.runs.models.RunStatus",
        "PromotionStateEnum": "apps.approvals.models.PromotionState",
        "SyncStateEnum": "apps.repositories.models.SyncState",
        "VariableTypeEnum": "apps.variables.models.VariableType",
        "TriggerKindEnum": "apps.runs.models.TriggerKind",
    },
    "APPEND_COMPONENTS": {
        "securitySchemes": {"ApiKeyAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "pnx_<prefix>_<secret>"}}
    },
    "SECURITY": [{"ApiKeyAuth": []}, {"cookieAuth": []}],
    # Self-hosted: Swagger UI and ReDoc come from the pinned drf-spectacular-sidecar package, never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "TAGS": API_TAGS,
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
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


def celery_queues(default: str, notifications: str) -> tuple[tuple[Queue, ...], dict]:
    """The queues a worker started without -Q consumes (both), and the route that sends every
    notification task (deliveries, their sweep) to the notifications queue: a slow or retried
    webhook then never waits in front of a deployment or a run (README: Running in production).
    Each queue is declared as Celery would create it on its own (a direct exchange of its name)."""
    queues = tuple(Queue(name, Exchange(name), routing_key=name) for name in (default, notifications))
    return queues, {"apps.notifications.tasks.*": {"queue": notifications}}


CELERY_TASK_DEFAULT_QUEUE = "celery"
NOTIFICATIONS_QUEUE = "notifications"
CELERY_TASK_QUEUES, CELERY_TASK_ROUTES = celery_queues(CELERY_TASK_DEFAULT_QUEUE, NOTIFICATIONS_QUEUE)
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "worker-heartbeat": {"task": "apps.core.tasks.worker_heartbeat", "schedule": 30.0},
    "notifications-sweep-deliveries": {"task": "apps.notifications.tasks.sweep_deliveries", "schedule": 60.0},
    "runs-fire-schedules": {"task": "apps.runs.tasks.fire_schedules", "schedule": 30.0},
    "runs-sweep": {"task": "apps.runs.tasks.sweep_runs", "schedule": 60.0},
    "runs-sweep-triggers": {"task": "apps.runs.tasks.sweep_triggers", "schedule": 60.0},
    "connection-tests-sweep": {"task": "apps.resolution.tasks.sweep_connection_tests", "schedule": 120.0},
    "promotions-sweep": {"task": "apps.approvals.tasks.sweep_promotions", "schedule": 60.0},
    "promotions-remind": {"task": "apps.approvals.tasks.remind_approvers", "schedule": 3600.0},
    "promotions-watch": {"task": "apps.approvals.tasks.watch_deployments", "schedule": 60.0},
    "repositories-sync": {"task": "apps.repositories.tasks.sync_repositories", "schedule": 600.0},
}
# A worker that has not written a heartbeat for this long is reported as stale by /healthz.
WORKER_HEARTBEAT_STALE_SECONDS = env.int("WORKER_HEARTBEAT_STALE_SECONDS", default=120)

# SQLite connection bindings may only use files in their own folder below this one,
# <root>/org-<organization id>/env-<environment id>/ (never the platform's database).
SQLITE_CONNECTION_ROOT = env.str("SQLITE_CONNECTION_ROOT", default=str(VAR_DIR / "demo"))

# --- egress (apps/core/egress.py) -------------------------------------------------------------
# Where bindings, connection tests, webhooks and Git remotes may connect. The platform's own
# database, broker, cache and SMTP server are always refused; loopback, link-local, metadata and
# unspecified addresses are refused unless EGRESS_ALLOW names them; EGRESS_DENY refuses whatever
# it names (organizations cannot override it). Entries: networks (CIDR) or host names (*.example.com).
EGRESS_ALLOW = env.list("EGRESS_ALLOW", default=[])
EGRESS_DENY = env.list("EGRESS_DENY", default=[])
# Private ranges (10/8, 172.16/12, 192.168/16, 100.64/10, fc00::/7): allowed unless this is off,
# in which case only allow-listed private targets (operator or organization) are.
EGRESS_ALLOW_PRIVATE = env.bool("EGRESS_ALLOW_PRIVATE", default=True)

# --- Git repositories (apps/repositories) ---------------------------------------------------------
# Bare mirrors of pipeline repositories live below GIT_MIRROR_ROOT; every `git` call is killed after
# GIT_TIMEOUT_SECONDS. file:// clone URLs (a path on the worker's disk) and plain http:// remotes only
# where GIT_ALLOW_LOCAL_URLS is on: local development and tests, never a shared server.
GIT_MIRROR_ROOT = env.str("GIT_MIRROR_ROOT", default=str(VAR_DIR / "git"))
GIT_TIMEOUT_SECONDS = env.int("GIT_TIMEOUT_SECONDS", default=120)
GIT_ALLOW_LOCAL_URLS = env.bool("GIT_ALLOW_LOCAL_URLS", default=False)

# --- runs -----------------------------------------------------------------------------------
# A running run's worker renews its lease from a heartbeat thread (every third of the lease, also
# during one long statement) and between batches; a lease that runs out means the worker died, and
# the sweep queues the run again (up to RUN_MAX_ATTEMPTS).
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

# --- operations ---------------------------------------------------------------------------
# /metrics (Prometheus) answers a scrape with `Authorization: Bearer <METRICS_TOKEN>`, or from an
# address in METRICS_ALLOWED_NETWORKS (default: this host only). Empty token: networks only.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_ALLOWED_NETWORKS = [  # a malformed network fails at start-up, not at the first scrape
    str(ipaddress.ip_network(network.strip(), strict=False))
    for network in env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.1/32", "::1/128"])
]
# --- logging --------------------------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
# `plain` (default) or `json`: one JSON object a line with the request id, user, organization and
# run/promotion ids, for log shippers.
LOG_FORMAT = env.str("LOG_FORMAT", default="plain")
if LOG_FORMAT not in ("plain", "json"):
    raise ValueError("LOG_FORMAT must be 'plain' or 'json'")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.middleware.RequestIdLogFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {
            "()": "pythonjsonlogger.json.JsonFormatter",
            "format": "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(user)s %(organization)s "
            "%(run_id)s %(promotion_id)s",
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
        },
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
