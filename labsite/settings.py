"""Django settings for RSS Lab, read from environment variables with safe defaults.

Variables (all optional):

- ``DJANGO_SECRET_KEY`` — required whenever ``DJANGO_DEBUG`` is off (the default): the
  settings refuse to load without it. There is no built-in fallback key. ``make run``
  (``labsite.launcher``) sets it from ``var/secret_key``, a random key it creates once;
  with ``DJANGO_DEBUG`` on, the settings use that same file themselves; under pytest a
  random key per test session is used (the web tests hand it to their subprocesses).
- ``DJANGO_DEBUG`` — ``1``/``true`` turns debug pages on (default off, even in development:
  static files are served by ``labsite.asgi`` either way).
- ``DJANGO_BEHIND_TLS_PROXY`` — ``1`` when a TLS-terminating proxy is in front (what
  docker-compose sets): trusts its ``X-Forwarded-Proto: https`` header and turns on
  secure cookies, the redirect to HTTPS and HSTS. Default off: ``make run`` serves plain
  HTTP on 127.0.0.1, where secure cookies would break logging in.
- ``DJANGO_SECURE_SSL_REDIRECT`` / ``DJANGO_SECURE_COOKIES`` — override those two parts
  (default: the value of ``DJANGO_BEHIND_TLS_PROXY``).
- ``DJANGO_SECURE_HSTS_SECONDS`` — HSTS max-age (default one year behind the proxy, else 0);
  ``DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS`` (default on) and ``DJANGO_SECURE_HSTS_PRELOAD``
  (default off; setting it to ``0`` explicitly records the decision and silences
  ``check --deploy``'s reminder security.W021).
- ``DJANGO_ALLOWED_HOSTS`` — comma separated (default ``127.0.0.1,localhost,[::1]``).
- ``DJANGO_CSRF_TRUSTED_ORIGINS`` — comma separated origins, for a proxy in front of daphne.
- ``DATABASE_URL`` — any URL dj-database-url reads (default SQLite in ``$RSSLAB_VAR``).
- ``DATABASE_NAME`` — overrides the database name of ``DATABASE_URL``. The test suite sets it
  so that the daphne and Celery worker subprocesses open the test database pytest created.
- ``RSSLAB_VAR`` — directory for local state (default ``<repo>/var``, which git ignores).
- ``REDIS_URL`` — Redis for the channel layer and the Celery broker (``redis://host:port/db``
  or ``unix:///path/to/sock``; ``labsite.launcher`` sets it to its embedded server).
- ``REDIS_PREFIX`` — prefix for every key the lab writes, so several labs (or a test run)
  can share one Redis without touching each other's keys.
- ``RUN_HEARTBEAT_SECONDS`` / ``RUN_STALE_SECONDS`` / ``RUN_MAX_ATTEMPTS`` — how often a
  running task proves its worker alive, after how long without proof the run is declared
  lost, and how many attempts a lost run gets before it fails.
- ``RUN_QUEUED_MAX_SECONDS`` — how long a run may wait for a worker before it fails as
  never started (default 6 hours).
- ``RUN_REAP_SECONDS`` — how often the lab's beat process looks for lost runs (default 15).
- ``RUN_SHARD_MIN_FLOWS`` / ``RUN_SHARDS`` / ``RUN_SHARD_QUEUE`` — a batch run of at least
  this many flows (default 1,000,000) is split by request core into this many shards
  (default 4, at most one per core), run as tasks on this Celery queue (default ``batch``).
- ``RUN_TRACE_MAX_FLOWS`` / ``RUN_TRACE_MAX_EVENTS`` / ``RUN_BATCH_MAX_FLOWS`` /
  ``RUN_COMPARE_MAX_FLOW_CELLS`` — how big a run may be (see "Runs" below);
  ``RUN_PCAP_EXPORT_MAX_FLOWS`` — how many of a run's flows "Export pcap" writes.
- ``LAB_PCAP_MAX_BYTES`` — the largest capture the lab page accepts (default 2 MiB).
- ``LOGIN_FAILURES_PER_USER_AND_ADDRESS`` / ``LOGIN_FAILURES_PER_USER`` — failed log-ins
  (default 5 / 20) within ``LOGIN_FAILURE_WINDOW_SECONDS`` (default 900) after which that
  username from that address / the username from anywhere is refused for
  ``LOGIN_COOLOFF_SECONDS`` (default 900); never per address alone (a class shares one
  NAT). See ``labsite.lab.throttle``; the counters live in Redis (``CACHES``).
- Fair use (``labsite.runs.quota``; the README's "Fair use"), each with a student and an
  instructor value (instructors: the ``instructor`` group and staff):
  ``RUN_ACTIVE_MAX_STUDENT`` / ``RUN_ACTIVE_MAX_INSTRUCTOR`` — queued or running runs a user
  may have at once (default 3 / 10; a comparison is one run); more are refused (429), never
  queued. ``RUN_SUBMIT_RATE_STUDENT`` / ``RUN_SUBMIT_RATE_INSTRUCTOR`` — run and compare
  requests per ``RUN_SUBMIT_RATE_WINDOW_SECONDS`` (default 10 / 30 per 60 s; 0: no limit),
  counted in Redis so every daphne process shares one count. ``RUN_STORAGE_BUDGET_STUDENT_MB``
  / ``RUN_STORAGE_BUDGET_INSTRUCTOR_MB`` — what a user's runs may keep in the database
  (default 200 / 2000 MB of 10^6 bytes; 0: no limit); past it new runs are refused (413).
- The REST API (``labsite.api``; the README's "API"): ``API_BODY_MAX_BYTES`` — the largest
  request body an API endpoint reads (default 16 MiB: ``/api/v1/hash``'s 100,000 tuples);
  ``API_HASH_MAX_TUPLES`` (100,000), ``API_BATCH_MAX_ITEMS`` (256),
  ``API_REQUEST_MAX_FLOWS`` — the flows of all the runs one request starts (default
  20,000,000); ``API_IDEMPOTENCY_SECONDS`` — how long a response is kept for its
  ``Idempotency-Key`` (default 24 h); ``API_PAGE_SIZE`` / ``API_PAGE_MAX`` (50 / 1,000).
- Exercises (``labsite.exercises``; the README's "Exercises in the lab"): ``EXERCISE_SECRET``
  — the secret students' variant seeds are derived from (default: a random one created once
  in ``$RSSLAB_VAR/exercise_secret``; never derived from ``DJANGO_SECRET_KEY``);
  ``EXERCISE_GRADE_TIMEOUT_SECONDS`` (default 60) — grading past it is not counted;
  ``EXERCISE_GRADING_STALE_SECONDS`` (default 150) — a grading older than this lost its
  worker and is queued again, ``EXERCISE_GRADE_MAX_TRIES`` (default 2) times in all, then
  failed (not counted); ``EXERCISE_ACTIVE_MAX`` (default 2) — ungraded attempts a student
  may have at once; ``EXERCISE_UPLOAD_MAX_BYTES`` (default the engine's 256 KiB).
- ``RUN_EVENTS_RETENTION_DAYS`` — the beat process deletes the events of runs finished longer
  ago than this (default 30; 0 keeps them for ever), every ``RUN_PRUNE_SECONDS`` (default
  3600); the run's row, verdict and report stay.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from labsite.redisurls import (
    DEFAULT_REDIS_URL,
    cache_config,
    celery_broker_url,
    celery_transport_options,
    channel_layers_config,
)
from labsite.secretkey import FILE_NAME as SECRET_KEY_FILE_NAME
from labsite.secretkey import new_secret_key, read_or_create_secret_key

BASE_DIR = Path(__file__).resolve().parent.parent


def _env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def _env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


VAR_DIR = Path(os.environ.get("RSSLAB_VAR") or BASE_DIR / "var")

DEBUG = _env_bool("DJANGO_DEBUG", False)
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "").strip()
if not SECRET_KEY:
    if DEBUG:
        # Development: the key `make run` keeps (random, made once, mode 0600), so logins
        # survive restarts and are shared by daphne, runserver and the worker alike.
        SECRET_KEY = read_or_create_secret_key(VAR_DIR / SECRET_KEY_FILE_NAME)
    elif "pytest" in sys.modules:
        # The test suite: a fresh key per session (tests/web/conftest.py passes it on to
        # the daphne and Celery subprocesses, which do not import pytest).
        SECRET_KEY = new_secret_key()
    else:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is not set: export a long random value (e.g. the output of "
            "python -c 'import secrets; print(secrets.token_urlsafe(48))'), or start the "
            "lab with `make run`, which keeps one in var/secret_key")
ALLOWED_HOSTS = _env_list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost,[::1]")
CSRF_TRUSTED_ORIGINS = _env_list("DJANGO_CSRF_TRUSTED_ORIGINS", "")
# A refused JSON request gets the API's JSON error, a page Django's HTML page.
CSRF_FAILURE_VIEW = "labsite.lab.api.csrf_failure"

# --- HTTPS (see the docstring): all off for `make run`'s plain HTTP on 127.0.0.1 ------------
BEHIND_TLS_PROXY = _env_bool("DJANGO_BEHIND_TLS_PROXY", False)
if BEHIND_TLS_PROXY:
    # The proxy must set this header itself (overwriting any a client sent).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = _env_bool("DJANGO_SECURE_SSL_REDIRECT", BEHIND_TLS_PROXY)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = _env_bool("DJANGO_SECURE_COOKIES", BEHIND_TLS_PROXY)
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_SECURE_HSTS_SECONDS")
                          or (365 * 24 * 3600 if BEHIND_TLS_PROXY else 0))
SECURE_HSTS_INCLUDE_SUBDOMAINS = _env_bool("DJANGO_SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = _env_bool("DJANGO_SECURE_HSTS_PRELOAD", False)
# Preloading is the domain owner's call (it binds every subdomain, for months): once the
# operator has said no explicitly, `check --deploy` need not remind them (W021).
SILENCED_SYSTEM_CHECKS = (["security.W021"]
                          if os.environ.get("DJANGO_SECURE_HSTS_PRELOAD", "").strip()
                          and not SECURE_HSTS_PRELOAD else [])

INSTALLED_APPS = [
    "daphne",
    "channels",
    # django.contrib.admin, with a default site whose log-in is throttled like the site's.
    "labsite.lab.adminsite.LabAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI and Redoc from the installed package, never a CDN (the lab works offline).
    "drf_spectacular_sidecar",
    "labsite.lab",
    "labsite.runs",
    "labsite.exercises",
    "labsite.api",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "labsite.middleware.ContentSecurityPolicyMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "labsite.urls"

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

WSGI_APPLICATION = "labsite.wsgi.application"
ASGI_APPLICATION = "labsite.asgi.application"

# --- Database -----------------------------------------------------------------------------
if not os.environ.get("DATABASE_URL"):
    # The default SQLite file lives in VAR_DIR; SQLite cannot create the directory itself.
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'rsslab.sqlite3'}",
        conn_max_age=0,
    )
}
if os.environ.get("DATABASE_NAME"):
    DATABASES["default"]["NAME"] = os.environ["DATABASE_NAME"]
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # daphne, the worker and its heartbeat thread write to one file at once: wait for the
    # lock instead of failing, take the write lock at BEGIN (no deadlocking upgrades), and
    # use WAL so readers never block the writer.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    # The test database must be a file (not Django's in-memory default) because the Celery
    # worker and daphne subprocesses of the web tests open it too. One file per pytest
    # process, so concurrent test sessions never share one.
    DATABASES["default"]["TEST"] = {
        "NAME": str(Path(tempfile.gettempdir()) / f"rsslab-test-{os.getpid()}.sqlite3"),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
# Log-in throttling (labsite.lab.throttle): per username + address and per username, never
# per address alone.
LOGIN_FAILURES_PER_USER_AND_ADDRESS = int(
    os.environ.get("LOGIN_FAILURES_PER_USER_AND_ADDRESS", "5"))
LOGIN_FAILURES_PER_USER = int(os.environ.get("LOGIN_FAILURES_PER_USER", "20"))
LOGIN_FAILURE_WINDOW_SECONDS = int(os.environ.get("LOGIN_FAILURE_WINDOW_SECONDS", "900"))
LOGIN_COOLOFF_SECONDS = int(os.environ.get("LOGIN_COOLOFF_SECONDS", "900"))
LOGIN_REDIRECT_URL = "runs:workbench"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

# --- Static files ---------------------------------------------------------------------------
# Served by labsite.asgi through Django's ASGIStaticFilesHandler from the finders below, so
# `make run` needs no collectstatic and works with DEBUG off. PlotlyFinder exposes the
# plotly.min.js that ships inside the installed plotly package as vendor/plotly.min.js.
STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATICFILES_FINDERS = [
    "django.contrib.staticfiles.finders.FileSystemFinder",
    "django.contrib.staticfiles.finders.AppDirectoriesFinder",
    "labsite.staticfinders.PlotlyFinder",
]
SERVE_STATIC = _env_bool("RSSLAB_SERVE_STATIC", True)

# --- Redis: channel layer and Celery broker --------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
REDIS_PREFIX = os.environ.get("REDIS_PREFIX", "rsslab")

CHANNEL_LAYERS = channel_layers_config(REDIS_URL, REDIS_PREFIX)
# Shared by every process (the log-in throttle's counters live here), under REDIS_PREFIX.
CACHES = cache_config(REDIS_URL, REDIS_PREFIX)

# Celery: JSON only; results live in the database (Run rows), never in a Redis result
# backend (redis-py 8 deprecates the setex that backend calls; see STACK-NOTES).
CELERY_BROKER_URL = celery_broker_url(REDIS_URL)
CELERY_BROKER_TRANSPORT_OPTIONS = celery_transport_options(
    REDIS_PREFIX, visibility_timeout=int(os.environ.get("CELERY_VISIBILITY_TIMEOUT", "3600")))
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Queueing a run happens inside a web request: when Redis is down, give up within seconds
# (the run is then failed with the reason and the API answers 503) instead of hanging.
CELERY_TASK_PUBLISH_RETRY_POLICY = {"max_retries": 2, "interval_start": 0,
                                    "interval_step": 0.2, "interval_max": 0.5}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "rsslab"
# Large batch runs (labsite.runs.sharding): a batch run of at least RUN_SHARD_MIN_FLOWS
# flows is split by request core into min(RUN_SHARDS, cores) shards, each a task on the
# RUN_SHARD_QUEUE queue (their merge too), so a big API batch waits behind other shards,
# never in front of students' lab runs and grading on the default queue.
RUN_SHARD_MIN_FLOWS = int(os.environ.get("RUN_SHARD_MIN_FLOWS", "1000000"))
RUN_SHARDS = int(os.environ.get("RUN_SHARDS", "4"))
RUN_SHARD_QUEUE = os.environ.get("RUN_SHARD_QUEUE", "batch")
# A worker started without -Q consumes every queue listed here (the launcher names both).
CELERY_TASK_QUEUES = {
    CELERY_TASK_DEFAULT_QUEUE: {"exchange": CELERY_TASK_DEFAULT_QUEUE,
                                "routing_key": CELERY_TASK_DEFAULT_QUEUE},
    RUN_SHARD_QUEUE: {"exchange": RUN_SHARD_QUEUE, "routing_key": RUN_SHARD_QUEUE},
}
CELERY_TASK_ROUTES = {"runs.run_shard": {"queue": RUN_SHARD_QUEUE},
                      "runs.merge_shards": {"queue": RUN_SHARD_QUEUE}}
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The lab's one beat process (labsite.beat; `celery -A labsite beat`, never `worker -B`):
# it stores the example scenarios as it starts and reaps lost runs every RUN_REAP_SECONDS,
# itself, not on a worker (see labsite.beat.LabScheduler), so no GET view ever writes.
RUN_REAP_SECONDS = float(os.environ.get("RUN_REAP_SECONDS", "15"))
CELERY_BEAT_SCHEDULER = "labsite.beat:LabScheduler"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
# What the beat process stores as it starts (labsite.beat), in order: the example scenarios,
# then the shipped exercise pack. Each is idempotent.
BEAT_STARTUP_LOADERS = ["labsite.lab.services.examples_load",
                        "labsite.exercises.services.exercises_pack_load"]
# Old runs' events are pruned there too (RUN_EVENTS_RETENTION_DAYS), a bounded batch per
# tick so a large backlog never holds up the reaper for long.
RUN_PRUNE_SECONDS = float(os.environ.get("RUN_PRUNE_SECONDS", "3600"))
CELERY_BEAT_SCHEDULE = {
    "reap-stale-runs": {
        "task": "runs.reap_stale",
        "schedule": RUN_REAP_SECONDS,
        "options": {"run_in_beat": True},
    },
    "reap-stale-gradings": {
        "task": "exercises.reap_stale",
        "schedule": RUN_REAP_SECONDS,
        "options": {"run_in_beat": True},
    },
    "prune-old-run-events": {
        "task": "runs.prune_events",
        "schedule": RUN_PRUNE_SECONDS,
        "options": {"run_in_beat": True},
    },
}

# --- Runs ------------------------------------------------------------------------------------
RUN_HEARTBEAT_SECONDS = float(os.environ.get("RUN_HEARTBEAT_SECONDS", "2"))
RUN_STALE_SECONDS = float(os.environ.get("RUN_STALE_SECONDS", "30"))
# A run whose worker died is retried until it has had this many attempts, then failed.
RUN_MAX_ATTEMPTS = int(os.environ.get("RUN_MAX_ATTEMPTS", "2"))
# A run still queued after this long never got a worker (the queue lost its task, or no
# worker ran for hours): the reaper fails it with that reason.
RUN_QUEUED_MAX_SECONDS = float(os.environ.get("RUN_QUEUED_MAX_SECONDS", str(6 * 3600)))
RUN_BATCH_MAX_EVENTS = 200
RUN_BATCH_MAX_SECONDS = 0.05
# Sizes a run may have (see labsite/runs/engine_bridge.py; the README's Limits section).
# Trace mode: ~15 events per flow, so 5,000 flows (every shipped example) stream ~75,000
# events; every event is stored for replay.
RUN_TRACE_MAX_FLOWS = int(os.environ.get("RUN_TRACE_MAX_FLOWS", "5000"))
RUN_TRACE_MAX_EVENTS = int(os.environ.get("RUN_TRACE_MAX_EVENTS", "200000"))
RUN_BATCH_MAX_FLOWS = int(os.environ.get("RUN_BATCH_MAX_FLOWS", "2000000"))
RUN_COMPARE_MAX_FLOW_CELLS = int(os.environ.get("RUN_COMPARE_MAX_FLOW_CELLS", "10000000"))
# A report carries the first RUN_REPORT_ROWS per-flow rows; batch runs of more than
# RUN_ROWS_MAX_FLOWS flows carry none (building the rows would cost more than the run).
RUN_REPORT_ROWS = 2000
RUN_ROWS_MAX_FLOWS = 100_000
# Slow motion: a trace run may sleep up to RUN_DELAY_MAX_MS per flow, RUN_DELAY_MAX_TOTAL_S
# in all.
RUN_DELAY_MAX_MS = 100
RUN_DELAY_MAX_TOTAL_S = 120.0
# The events endpoint returns at most this many events per request.
RUN_EVENTS_PAGE_MAX = 5000
# "Export pcap" writes the packets of a run's first RUN_PCAP_EXPORT_MAX_FLOWS flows.
RUN_PCAP_EXPORT_MAX_FLOWS = int(os.environ.get("RUN_PCAP_EXPORT_MAX_FLOWS", "5000"))

# --- Fair use (labsite.runs.quota; README "Fair use") -----------------------------------------
# One student's burst must not hold up everyone else: runs past the active cap are refused,
# not queued, so the one FIFO queue holds at most that many runs of any one user.
RUN_ACTIVE_MAX_STUDENT = int(os.environ.get("RUN_ACTIVE_MAX_STUDENT", "3"))
RUN_ACTIVE_MAX_INSTRUCTOR = int(os.environ.get("RUN_ACTIVE_MAX_INSTRUCTOR", "10"))
# What a refusal for too many active runs suggests in Retry-After (a run's end is unknown).
RUN_ACTIVE_RETRY_SECONDS = int(os.environ.get("RUN_ACTIVE_RETRY_SECONDS", "15"))
RUN_SUBMIT_RATE_STUDENT = int(os.environ.get("RUN_SUBMIT_RATE_STUDENT", "10"))
RUN_SUBMIT_RATE_INSTRUCTOR = int(os.environ.get("RUN_SUBMIT_RATE_INSTRUCTOR", "30"))
RUN_SUBMIT_RATE_WINDOW_SECONDS = int(os.environ.get("RUN_SUBMIT_RATE_WINDOW_SECONDS", "60"))
RUN_STORAGE_BUDGET_STUDENT_MB = float(os.environ.get("RUN_STORAGE_BUDGET_STUDENT_MB", "200"))
RUN_STORAGE_BUDGET_INSTRUCTOR_MB = float(
    os.environ.get("RUN_STORAGE_BUDGET_INSTRUCTOR_MB", "2000"))
RUN_EVENTS_RETENTION_DAYS = float(os.environ.get("RUN_EVENTS_RETENTION_DAYS", "30"))
# Runs pruned per beat tick (each in its own transaction); the rest wait for the next tick.
RUN_PRUNE_BATCH = 200

# --- The lab page ---------------------------------------------------------------------------
# An uploaded capture larger than this is refused before it is read (bytes).
LAB_PCAP_MAX_BYTES = int(os.environ.get("LAB_PCAP_MAX_BYTES", str(2 * 1024 * 1024)))
# Scenario text typed into the lab (bytes).
LAB_SCENARIO_MAX_BYTES = 256 * 1024
# Requests carrying a capture must fit Django's in-memory limits.
DATA_UPLOAD_MAX_MEMORY_SIZE = LAB_PCAP_MAX_BYTES + LAB_SCENARIO_MAX_BYTES + 64 * 1024
FILE_UPLOAD_MAX_MEMORY_SIZE = LAB_PCAP_MAX_BYTES + 64 * 1024

# --- The REST API (labsite.api; README "API") ------------------------------------------------
API_BODY_MAX_BYTES = int(os.environ.get("API_BODY_MAX_BYTES", str(16 * 1024 * 1024)))
API_HASH_MAX_TUPLES = int(os.environ.get("API_HASH_MAX_TUPLES", "100000"))
API_BATCH_MAX_ITEMS = int(os.environ.get("API_BATCH_MAX_ITEMS", "256"))
API_REQUEST_MAX_FLOWS = int(os.environ.get("API_REQUEST_MAX_FLOWS", "20000000"))
API_IDEMPOTENCY_SECONDS = int(os.environ.get("API_IDEMPOTENCY_SECONDS", str(24 * 3600)))
API_PAGE_SIZE = int(os.environ.get("API_PAGE_SIZE", "50"))
API_PAGE_MAX = int(os.environ.get("API_PAGE_MAX", "1000"))
# A token's last-used time is written at most this often (not on every request).
API_TOKEN_TOUCH_SECONDS = 60

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "labsite.api.authentication.BearerTokenAuthentication",
        # The lab's own log-in; DRF checks its CSRF token on writes, as the lab's pages do.
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["labsite.api.permissions.TokenScopePermission"],
    "DEFAULT_PARSER_CLASSES": ["labsite.api.parsers.BoundedJSONParser",
                               "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PAGINATION_CLASS": "labsite.api.pagination.Pagination",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "labsite.api.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    "DEFAULT_VERSIONING_CLASS": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "RSS Lab API",
    "DESCRIPTION": "Verify RSS steering configurations in batches: hash tuples, store and "
                   "validate scenarios, run them, read verdicts and JUnit XML. Authenticate "
                   "with `Authorization: Bearer <token>` (make one at /api/tokens/).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # Several shapes have a ``status``: the exercises' two get names of their own.
    "ENUM_NAME_OVERRIDES": {
        "ExerciseStatusEnum": ["not started", "started", "graded"],
        "AttemptStatusEnum": ["queued", "grading", "graded", "failed"],
    },
}
# --- Exercises (labsite.exercises) -----------------------------------------------------------
# Variant seeds come from this secret (labsite.exercises.secret), never from SECRET_KEY.
EXERCISE_SECRET = os.environ.get("EXERCISE_SECRET", "")
EXERCISE_GRADE_TIMEOUT_SECONDS = float(os.environ.get("EXERCISE_GRADE_TIMEOUT_SECONDS", "60"))
# A grading is bounded by the timeout, so one older than this lost its worker (no heartbeat
# thread needed, unlike runs, which may take hours).
EXERCISE_GRADING_STALE_SECONDS = float(os.environ.get("EXERCISE_GRADING_STALE_SECONDS", "150"))
EXERCISE_GRADE_MAX_TRIES = int(os.environ.get("EXERCISE_GRADE_MAX_TRIES", "2"))
EXERCISE_ACTIVE_MAX = int(os.environ.get("EXERCISE_ACTIVE_MAX", "2"))
EXERCISE_UPLOAD_MAX_BYTES = int(os.environ.get("EXERCISE_UPLOAD_MAX_BYTES", str(256 * 1024)))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    # A 403 (a student on an admin page, a refused CSRF token) or another 4xx is the lab
    # working as meant: one warning line, not a traceback; 500s keep theirs.
    "filters": {"client_errors_one_line": {"()": "labsite.logfilters.ClientErrorsOneLine"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        # Not propagated: Celery's processes add a root handler of their own, which would
        # print every line twice.
        "labsite": {"handlers": ["console"], "level": "INFO", "propagate": False},
        "django.request": {"filters": ["client_errors_one_line"]},
    },
}
