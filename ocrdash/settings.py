"""Settings for ocrdash, read from the environment (see .env.example and the README's table).

They fail closed: DEBUG is off unless DJANGO_DEBUG=true, a missing or placeholder
DJANGO_SECRET_KEY stops every process at start, and outside DEBUG the transport settings
(HTTPS redirect, HSTS, secure cookies) are on unless switched off one by one. The demo
(scripts/demo.py) and the tests (settings_test.py) set what they need explicitly. Without a
DATABASE_URL or CELERY_BROKER_URL the dashboard uses an SQLite file and a broker folder.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF

from workers.logs import logging_config

from .secret_key import checked_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# A .env file beside manage.py is read if present (production puts real values there).
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DJANGO_DEBUG", default=False)
SECRET_KEY = checked_secret_key(env.str("DJANGO_SECRET_KEY", default=""))
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

# ---------------------------------------------------------------- HTTPS (manage.py check --deploy)
# Behind a TLS proxy, name the header it sets to "https" (X-Forwarded-Proto): only then can
# Django tell an HTTPS request from a plain one. The proxy must overwrite a client's own copy.
_proxy_header = env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default="").strip()
if _proxy_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_header.upper().replace("-", "_"), "https")
SECURE_SSL_REDIRECT = env.bool("DJANGO_SECURE_SSL_REDIRECT", default=not DEBUG)
SECURE_HSTS_SECONDS = env.int("DJANGO_SECURE_HSTS_SECONDS", default=0 if DEBUG else 31_536_000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", default=not DEBUG)
SECURE_HSTS_PRELOAD = env.bool("DJANGO_SECURE_HSTS_PRELOAD", default=False)
SESSION_COOKIE_SECURE = env.bool("DJANGO_SECURE_COOKIES", default=not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
# How many proxies in front add themselves to X-Forwarded-For: the client's address (for
# login lockouts) is then read from that header; 0 trusts only the connection's address,
# since a header a client can write itself would let a guesser pose as any address.
TRUSTED_PROXY_COUNT = env.int("DJANGO_TRUSTED_PROXY_COUNT", default=0)

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here (no CDN)
    "django_celery_beat",
    "health_check",
    "axes",
    "csp",
    "models_admin",
]

MIDDLEWARE = [
    # First: every line logged while handling a request carries its id.
    "ocrdash.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    # Serves static files in production without a separate web server.
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Every page needs a login; the few public ones (login itself) are listed in the view.
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Last, as django-axes asks: it turns a locked-out login into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# ---------------------------------------------------------------- Content-Security-Policy
# Scripts only from our own static files (no inline <script>, no inline handlers, no eval):
# an injected string can then never run. Inline style *attributes* stay allowed: they cannot
# run code, and the templates size a few bars and inputs with them.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "style-src-attr": ["'unsafe-inline'"],
        "img-src": [SELF, "data:"],
        "font-src": [SELF, "data:"],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

ROOT_URLCONF = "ocrdash.urls"
WSGI_APPLICATION = "ocrdash.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "models_admin.context_processors.roles",
            ],
        },
    },
]


def bound_by_the_server(database: dict) -> dict:
    """A PostgreSQL ``database`` with parameters bound by the server and its often-run
    statements prepared once per connection.

    Django's default (parameters written into the SQL text by the client, never prepared) makes
    PostgreSQL parse and plan every statement again: ingest's few large statements, run for
    every report, cost a third more that way (bench_ingest). Behind a pooler in transaction
    mode that cannot keep prepared statements (PgBouncer before 1.21 or without
    ``max_prepared_statements``) set ``OCRDASH_DB_PREPARED_STATEMENTS=false``.
    """
    if database["ENGINE"] != "django.db.backends.postgresql":
        return database
    prepared = env.bool("OCRDASH_DB_PREPARED_STATEMENTS", default=True)
    database.setdefault("OPTIONS", {}).update(
        {"server_side_binding": True, "prepare_threshold": 5 if prepared else None}
    )
    return database


DATABASES = {
    "default": bound_by_the_server(env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'ocrdash.sqlite3'}"))
}
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# One connection per process, kept between requests and tasks: opening one per report cost
# more than storing the report. Checked before reuse (CONN_HEALTH_CHECKS), so a restarted
# database costs a reconnect, not failed requests. The ingest worker closes connections the
# same way between tasks (ocrdash/celery.py), with Celery's own closing held off by
# CELERY_DB_REUSE_MAX below.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("OCRDASH_DB_CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, ingest worker, scheduler) share the demo's SQLite file: wait for
    # a writer instead of failing with "database is locked", and take the write lock at BEGIN.
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {"timeout": 20, "transaction_mode": "IMMEDIATE", "init_command": "PRAGMA journal_mode=WAL;"}
    )

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out user name or address before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
# Login lockout (django-axes): after this many failures a user name is locked, and so is an
# address, each on its own, for the lockout time; a success resets the count. Attempts made
# while locked are not recorded, so a guesser cannot keep the lock (or the rows) growing.
AXES_FAILURE_LIMIT = env.int("OCRDASH_LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("OCRDASH_LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_RESET_ON_SUCCESS = True
AXES_RESET_COOL_OFF_ON_FAILURE_DURING_LOCKOUT = False
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_SENSITIVE_PARAMETERS = ["password", "csrfmiddlewaretoken"]
AXES_IPWARE_PROXY_COUNT = TRUSTED_PROXY_COUNT or None
AXES_IPWARE_META_PRECEDENCE_ORDER = (
    ("HTTP_X_FORWARDED_FOR", "REMOTE_ADDR") if TRUSTED_PROXY_COUNT else ("REMOTE_ADDR",)
)
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "ocrdash-fleet"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("OCRDASH_TIME_ZONE", default="UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "static/"
# Where `collectstatic` puts the files whitenoise serves (the image collects into /app/staticfiles).
STATIC_ROOT = Path(env.str("DJANGO_STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": (
            "django.contrib.staticfiles.storage.StaticFilesStorage"
            if DEBUG
            else "whitenoise.storage.CompressedManifestStaticFilesStorage"
        )
    },
}

# Throttles (the API's, per user and per address) count in this cache: give several web
# processes one Redis (OCRDASH_CACHE_URL=redis://...) or each counts on its own.
_cache_url = env.str("OCRDASH_CACHE_URL", default="")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": _cache_url}
        if _cache_url
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

# One line per record with time, level, logger and request or task id, control characters
# escaped (workers/logs.py); OCRDASH_LOG_FORMAT=json for JSON lines.
_logging = logging_config(env.str("OCRDASH_LOG_LEVEL", default="INFO"))
LOGGING = {
    **_logging,
    "filters": {**_logging["filters"], "summary": {"()": "workers.logs.SummaryOnly"}},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # axes logs every login at INFO; its warnings (failures, lockouts) stay.
        "axes": {"level": "WARNING"},
        # A failed health check is one line naming the check and the error, not a traceback.
        "health_check": {"filters": ["summary"]},
    },
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "models_admin.api.tokens.DigestTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "models_admin.api.pagination.CappedLimitOffsetPagination",
    "PAGE_SIZE": 100,
    "EXCEPTION_HANDLER": "models_admin.api.errors.exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    # Per signed-in user (token or session) and per address for anonymous callers; a caller
    # over the rate gets 429 with Retry-After.
    "DEFAULT_THROTTLE_CLASSES": [
        "rest_framework.throttling.AnonRateThrottle",
        "rest_framework.throttling.UserRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env.str("OCRDASH_API_ANON_RATE", default="30/minute"),
        "user": env.str("OCRDASH_API_USER_RATE", default="600/minute"),
    },
    "NUM_PROXIES": TRUSTED_PROXY_COUNT,
}

# OpenAPI 3 at /api/schema/, Swagger UI at /api/docs/ with its files from the sidecar package.
SPECTACULAR_SETTINGS = {
    "TITLE": "ocrdash API",
    "DESCRIPTION": (
        "Hosts, their model files, prune requests and their approval, the audit. "
        "Authenticate with `Authorization: Token <key>` (make yours on your account page, "
        "/account/) or a browser session; each call needs the role of the matching page."
    ),
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # Three models have a field called state; each keeps its own enum name in the schema.
    "ENUM_NAME_OVERRIDES": {
        "PruneRequestStateEnum": "models_admin.models.PruneRequest.State",
        "CampaignStateEnum": "models_admin.models.Campaign.State",
        "CampaignHostStateEnum": "models_admin.models.CampaignHost.State",
    },
}

# ---------------------------------------------------------------- Celery
# Default broker: kombu's filesystem transport in var/broker, so the demo needs no server.
# Production and tests use Redis (CELERY_BROKER_URL=redis://...).
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
BROKER_FOLDER = Path(env.str("OCRDASH_BROKER_FOLDER", default=str(VAR_DIR / "broker")))
if CELERY_BROKER_URL.startswith("filesystem://"):
    from workers.broker import filesystem_transport_options

    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = dict(filesystem_transport_options(BROKER_FOLDER))
else:
    # Longer than the slowest task (a full re-hash of a host's models), so an unacked task
    # is not handed to a second worker while the first still runs it.
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": env.int("OCRDASH_BROKER_VISIBILITY_TIMEOUT", default=4 * 3600)
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
# Ingest takes up to this many reports off the queue per pool job, or what came within
# INGEST_BATCH_SECONDS (models_admin/tasks.py). 1 is one report per job, as plain tasks.
INGEST_BATCH = max(1, env.int("OCRDASH_INGEST_BATCH", default=50))
INGEST_BATCH_SECONDS = env.float("OCRDASH_INGEST_BATCH_SECONDS", default=0.5)
# A worker holds this many unacked messages per pool process: a batch is formed in the worker
# from what it has prefetched, so with fewer than a batch there would be no batches.
CELERY_WORKER_PREFETCH_MULTIPLIER = INGEST_BATCH
# Celery's Django fixup closes every database connection around every task unless this is
# set; it then closes them only every this many tasks. ocrdash/celery.py closes a connection
# that is broken or older than CONN_MAX_AGE between tasks instead.
CELERY_DB_REUSE_MAX = 10_000
CELERY_TASK_TIME_LIMIT = 30 * 60
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"

# ---------------------------------------------------------------- ocrdash's own rules
OCRDASH = {
    "INGEST_BATCH": INGEST_BATCH,
    "INGEST_BATCH_SECONDS": INGEST_BATCH_SECONDS,
    # A proposed request nobody decided on within this many hours expires.
    "REQUEST_TTL_HOURS": env.float("OCRDASH_REQUEST_TTL_HOURS", default=72),
    # An order's broker expiry and its own expires_at: a host that was away longer ignores it.
    "ORDER_TTL_MINUTES": env.float("OCRDASH_ORDER_TTL_MINUTES", default=60),
    # A dispatched order with no answer after this long is sent again ...
    "RESEND_AFTER_MINUTES": env.float("OCRDASH_RESEND_AFTER_MINUTES", default=15),
    # ... at most this many times in all, then marked failed.
    "MAX_DISPATCH_ATTEMPTS": env.int("OCRDASH_MAX_DISPATCH_ATTEMPTS", default=3),
    # Hosts report on every inventory (hourly by default, see the schedules page): one silent
    # for longer than OFFLINE is shown offline, for longer than MISSING as missing.
    "HOST_OFFLINE_AFTER_MINUTES": env.float("OCRDASH_HOST_OFFLINE_AFTER_MINUTES", default=90),
    "HOST_MISSING_AFTER_MINUTES": env.float("OCRDASH_HOST_MISSING_AFTER_MINUTES", default=24 * 60),
    # Default name prefix of stale models, as in the Aspose tutorial.
    "STALE_PREFIX": env.str("OCRDASH_STALE_PREFIX", default="old_"),
    # A report sent further than this from the dashboard's clock (either way) is refused.
    "MAX_CLOCK_SKEW_SECONDS": env.float("OCRDASH_MAX_CLOCK_SKEW_SECONDS", default=300),
    # The most rows one API page returns, whatever ?limit= asks.
    "API_MAX_PAGE_SIZE": env.int("OCRDASH_API_MAX_PAGE_SIZE", default=500),
    # How long a new enrollment token stays usable.
    "ENROLLMENT_TOKEN_HOURS": env.float("OCRDASH_ENROLLMENT_TOKEN_HOURS", default=24),
    # /healthz (ocrdash/health.py): beat must have run a periodic task within this many minutes,
    # fewer than this many reports may wait on the ingest queue, and each probe's time budget.
    "HEALTH_BEAT_MAX_MINUTES": env.float("OCRDASH_HEALTH_BEAT_MAX_MINUTES", default=30),
    "HEALTH_INGEST_QUEUE_MAX": env.int("OCRDASH_HEALTH_INGEST_QUEUE_MAX", default=10_000),
    "HEALTH_TIMEOUT_SECONDS": env.float("OCRDASH_HEALTH_TIMEOUT_SECONDS", default=3),
    # /metrics (ocrdash/metrics.py) also answers a scraper sending "Authorization: Bearer <this>".
    "METRICS_TOKEN": env.str("OCRDASH_METRICS_TOKEN", default=""),
    # Notifications link to pages: the dashboard's address as people reach it.
    "BASE_URL": env.str("OCRDASH_BASE_URL", default="http://127.0.0.1:8000"),
    # Sends of one notification before it is marked failed (30 s, 1, 2, 4 ... min apart).
    "NOTIFY_MAX_ATTEMPTS": env.int("OCRDASH_NOTIFY_MAX_ATTEMPTS", default=5),
    # Quarantined files are purged from their host after this many days (the daily purge
    # task; the days saved on the settings page, in its kwargs, take precedence).
    "QUARANTINE_DAYS": env.float("OCRDASH_QUARANTINE_DAYS", default=7),
    # Capacity (capacity/alerts.py): a host's forecast falling under this many days until full
    # is told once; so is its disk passing the high mark of its watermark (its own watermark
    # schedule, else its groups', else these defaults), told again only once it fell under the low.
    "FORECAST_ALERT_DAYS": env.float("OCRDASH_FORECAST_ALERT_DAYS", default=14),
    "WATERMARK_HIGH": env.int("OCRDASH_WATERMARK_HIGH", default=85),
    "WATERMARK_LOW": env.int("OCRDASH_WATERMARK_LOW", default=80),
}

# ---------------------------------------------------------------- email (notifications)
# Django's SMTP backend; with no server configured, messages are recorded as failed with the
# reason (the workflow never waits for them).
EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
EMAIL_HOST = env.str("OCRDASH_SMTP_HOST", default="localhost")
EMAIL_PORT = env.int("OCRDASH_SMTP_PORT", default=25)
EMAIL_HOST_USER = env.str("OCRDASH_SMTP_USER", default="")
EMAIL_HOST_PASSWORD = env.str("OCRDASH_SMTP_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("OCRDASH_SMTP_STARTTLS", default=False)
EMAIL_USE_SSL = env.bool("OCRDASH_SMTP_SSL", default=False)
EMAIL_TIMEOUT = env.int("OCRDASH_SMTP_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("OCRDASH_EMAIL_FROM", default="ocrdash <ocrdash@localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
# The dashboard's private signing key (made on first use, 0600): every order is signed with
# it, and agents pin its public half (`manage.py signing_key`). Back it up; losing it means
# re-pinning every agent.
OCRDASH_SIGNING_KEY_FILE = Path(
    env.str("OCRDASH_SIGNING_KEY_FILE", default=str(VAR_DIR / "keys" / "dashboard.key"))
)
