"""One settings module for every deployment; each deployment value comes from an environment variable.

The defaults run the whole product on one machine with nothing else installed (SQLite and a Celery broker kept in
files under ``var/``). ``.env.example`` lists every variable.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env(name: str, default: str) -> str:
    """The variable's value; unset and empty both mean the default (as an empty line in .env does)."""
    return os.environ.get(name, "").strip() or default


def envbool(name: str, default: str) -> bool:
    value = env(name, default).lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, got {value!r}")


def envint(name: str, default: str) -> int:
    value = env(name, default)
    try:
        return int(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from None


def envfloat(name: str, default: str) -> float:
    value = env(name, default)
    try:
        return float(value)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a number, got {value!r}") from None


def envlist(name: str, default: str) -> list[str]:
    return [item.strip() for item in env(name, default).split(",") if item.strip()]


def envrate(name: str, default: str) -> str:
    """A rate as Django REST framework reads it: requests per second, minute, hour or day (``120/min``)."""
    value = env(name, default)
    number, _, period = value.partition("/")
    if not (number.isascii() and number.isdigit() and int(number) > 0 and period[:1] in ("s", "m", "h", "d")):
        raise ImproperlyConfigured(f"{name} must be a number of requests per s, min, hour or day, got {value!r}")
    return value


def envpath(name: str, default: Path) -> Path:
    """A path; relative values are taken from the repository root, not from the current directory."""
    value = env(name, "")
    return (BASE_DIR / value).resolve() if value else default


# Like healthchecks, DEBUG defaults to on so that `make run` works from a fresh clone; the Docker image and
# .env.example turn it off, and then SECRET_KEY must be set.
DEBUG = envbool("DEBUG", "true")
SECRET_KEY = env("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off (see .env.example)")
    SECRET_KEY = "dev-only-insecure-key-never-use-in-production"
# Former SECRET_KEYs, still accepted for what they signed (sessions) and encrypted (API clients' webhook secrets):
# rotate SECRET_KEY by moving the old one here.
SECRET_KEY_FALLBACKS = envlist("SECRET_KEY_FALLBACKS", "")
ALLOWED_HOSTS = envlist("ALLOWED_HOSTS", "127.0.0.1,localhost")
CSRF_TRUSTED_ORIGINS = envlist("CSRF_TRUSTED_ORIGINS", "")
PORT = envint("PORT", "8000")

VAR_DIR = envpath("VAR_DIR", BASE_DIR / "var")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI's files, served from here: the API docs page works offline
    "diagnosis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Lets audit entries name the request's source IP without every service taking the request.
    "diagnosis.audit.AuditRequestMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "diagnosis.accounts.SessionIdleTimeoutMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "mpoxsite.urls"
WSGI_APPLICATION = "mpoxsite.wsgi.application"

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
                "diagnosis.context_processors.review_queue",
                "diagnosis.context_processors.audit_link",
            ],
        },
    },
]

_default_database = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(env("DATABASE_URL", _default_database))}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write at the same time: WAL plus IMMEDIATE transactions avoid "database is
    # locked" errors, and the timeout lets a writer wait for the other instead of failing.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 20,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
# Connections are kept between requests and tasks (each thread and worker process has its own). Opening one costs
# about 1.7 ms of CPU even for SQLite (Django registers its SQL functions on every new connection), and more for
# PostgreSQL (a TCP connection and authentication): a photo's upload and its analysis each paid for one.
DATABASES["default"]["CONN_MAX_AGE"] = envint("DB_CONN_MAX_AGE", "60")
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Django's username/password check, refusing locked-out usernames first (diagnosis/accounts.py).
AUTHENTICATION_BACKENDS = ["diagnosis.accounts.LockoutModelBackend"]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "case-list"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
# Finders let whitenoise serve static files without a collectstatic step, so `make run` needs none; the Docker
# image sets STATIC_ROOT and collects them at build time.
STATIC_ROOT = env("STATIC_ROOT", "") or None
WHITENOISE_USE_FINDERS = True

# Every uploaded file is private: the default storage has no public URL, and no URL pattern serves MEDIA_ROOT.
# Photos and heatmaps reach a browser only through views that check the viewer's role.
MEDIA_ROOT = envpath("PRIVATE_STORAGE_ROOT", VAR_DIR / "private")
MEDIA_URL = "/private-files-are-not-served/"
STORAGES = {
    "default": {"BACKEND": "diagnosis.storage.PrivateStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
FILE_UPLOAD_PERMISSIONS = 0o640
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o750

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = envbool("SECURE_COOKIES", "false")
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_AGE = envint("SESSION_COOKIE_AGE", str(12 * 3600))
# A session unused (page polling aside) for this long is logged out; SESSION_COOKIE_AGE caps it altogether.
MPOX_SESSION_IDLE_MINUTES = envint("MPOX_SESSION_IDLE_MINUTES", "30")
# This many failed log-ins for one username within MPOX_LOCKOUT_MINUTES lock it for MPOX_LOCKOUT_MINUTES.
MPOX_LOGIN_MAX_FAILURES = envint("MPOX_LOGIN_MAX_FAILURES", "5")
MPOX_LOCKOUT_MINUTES = envint("MPOX_LOCKOUT_MINUTES", "15")
# The same per source IP; 0 turns it off (the default: behind a proxy every log-in comes from the proxy's address).
MPOX_LOGIN_MAX_FAILURES_PER_IP = envint("MPOX_LOGIN_MAX_FAILURES_PER_IP", "0")
# How many reverse proxies in front of the site append to X-Forwarded-For; the audit log and the per-IP lockout
# then record the address the outermost one saw. 0 (the default) trusts no such header: a client could forge it.
MPOX_TRUSTED_PROXIES = envint("MPOX_TRUSTED_PROXIES", "0")
if MPOX_TRUSTED_PROXIES < 0:
    raise ImproperlyConfigured("MPOX_TRUSTED_PROXIES must be 0 or more")
if min(MPOX_SESSION_IDLE_MINUTES, MPOX_LOGIN_MAX_FAILURES, MPOX_LOCKOUT_MINUTES) < 1:
    raise ImproperlyConfigured(
        "MPOX_SESSION_IDLE_MINUTES, MPOX_LOGIN_MAX_FAILURES and MPOX_LOCKOUT_MINUTES must be at least 1"
    )
if MPOX_LOGIN_MAX_FAILURES_PER_IP < 0:
    raise ImproperlyConfigured("MPOX_LOGIN_MAX_FAILURES_PER_IP must be 0 (off) or more")
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", "INFO")},
}

# --- REST API (diagnosis/api.py sets authentication, permissions, throttling and errors per view) ---
REST_FRAMEWORK = {"DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema"}
# Calls per API client; and per source address (see MPOX_TRUSTED_PROXIES) for calls without a valid token (none, a
# wrong or a revoked one), which are answered 429 past it while valid clients from that address go on.
MPOX_API_RATE = envrate("MPOX_API_RATE", "120/min")
MPOX_API_UNAUTHENTICATED_RATE = envrate("MPOX_API_UNAUTHENTICATED_RATE", "30/min")

# The rate limits count here. Django's default, a memory cache in each process, would let every gunicorn worker
# count on its own; the database (a table made by the migrations) is shared by all of them with nothing to install,
# Redis also by several machines. locmem:// is for a single process only.
CACHE_URL = env("CACHE_URL", "db://")
if CACHE_URL == "db://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "mpox_cache"}}
elif CACHE_URL.startswith(("redis://", "rediss://")):
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}}
elif CACHE_URL == "locmem://":
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
else:
    raise ImproperlyConfigured(f"CACHE_URL must be db://, redis://host:port/db or locmem://, got {CACHE_URL!r}")
SPECTACULAR_SETTINGS = {
    "TITLE": "Mpox Triage API",
    "DESCRIPTION": "Photo triage results for other hospital systems. Errors are application/problem+json.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery (read by mpoxsite/celery.py through the CELERY_ namespace) ---
CELERY_BROKER_URL = env("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    _broker_dir = envpath("CELERY_BROKER_FOLDER", VAR_DIR / "broker")
    for _sub in ("queue", "processed", "control"):
        (_broker_dir / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        "polling_interval": 0.05,
    }
    # kombu's filesystem transport with messages written whole (see mpoxsite/broker.py).
    CELERY_BROKER_TRANSPORT = "mpoxsite.broker:Transport"
else:
    # Redis: a message whose worker died unacknowledged comes back after this; the database sweep is faster.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": envint("CELERY_VISIBILITY_TIMEOUT", "3600")}
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True  # job state lives on the Analysis row, never in a result backend
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SOFT_TIME_LIMIT = envint("CELERY_TASK_SOFT_TIME_LIMIT", "60")
CELERY_TASK_TIME_LIMIT = envint("CELERY_TASK_TIME_LIMIT", "90")
CELERY_WORKER_MAX_TASKS_PER_CHILD = envint("CELERY_WORKER_MAX_TASKS_PER_CHILD", "500")
CELERY_TASK_ALWAYS_EAGER = False
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
if CELERY_TASK_TIME_LIMIT <= CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_TIME_LIMIT must be larger than CELERY_TASK_SOFT_TIME_LIMIT")

# --- Mpox triage ---
MPOX_MODEL_WEIGHTS = envpath("MPOX_MODEL_WEIGHTS", BASE_DIR / "ml" / "weights" / "fast_mpoxnet.pt")
MPOX_INFERENCE_BACKEND = env("MPOX_INFERENCE_BACKEND", "auto")
if MPOX_INFERENCE_BACKEND not in ("auto", "openvino", "onnx", "torch"):
    raise ImproperlyConfigured(
        f"MPOX_INFERENCE_BACKEND must be auto, openvino, onnx or torch, got {MPOX_INFERENCE_BACKEND!r}"
    )
MPOX_INFERENCE_THREADS = envint("MPOX_INFERENCE_THREADS", "0")  # 0: let the runtime decide
# An mpox probability at or above this shows the isolation-and-referral advisory.
MPOX_ADVISORY_THRESHOLD = envfloat("MPOX_ADVISORY_THRESHOLD", "0.5")
if not 0.0 < MPOX_ADVISORY_THRESHOLD <= 1.0:
    raise ImproperlyConfigured("MPOX_ADVISORY_THRESHOLD must be in (0, 1]")
# A clinician's claim on a case (taken when they open it to review) lapses after this many minutes.
MPOX_CLAIM_MINUTES = envint("MPOX_CLAIM_MINUTES", "20")
if MPOX_CLAIM_MINUTES < 1:
    raise ImproperlyConfigured("MPOX_CLAIM_MINUTES must be at least 1")
MPOX_MAX_UPLOAD_BYTES = envint("MPOX_MAX_UPLOAD_BYTES", str(20 * 1024 * 1024))
# A photo within the limit is kept in memory while its request is handled (a few at a time, 20 MB each at most):
# the original, GPS and all, never lands in a temporary file outside private storage, nor is written and read back.
FILE_UPLOAD_MAX_MEMORY_SIZE = MPOX_MAX_UPLOAD_BYTES
FILE_UPLOAD_HANDLERS = ["mpoxsite.uploads.MemoryPhotoUploadHandler", "mpoxsite.uploads.TemporaryPhotoUploadHandler"]
MPOX_MAX_PIXELS = envint("MPOX_MAX_PIXELS", "50000000")
# Analyses queued or running longer than this are put back on the queue (their worker died or the message was
# lost); after MPOX_ANALYSIS_MAX_ATTEMPTS tries an analysis fails with a message instead.
MPOX_ANALYSIS_STALE_SECONDS = envint("MPOX_ANALYSIS_STALE_SECONDS", "300")
MPOX_ANALYSIS_MAX_ATTEMPTS = envint("MPOX_ANALYSIS_MAX_ATTEMPTS", "3")
if MPOX_ANALYSIS_STALE_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("MPOX_ANALYSIS_STALE_SECONDS must be larger than CELERY_TASK_TIME_LIMIT")
CELERY_BEAT_SCHEDULE = {
    "requeue-stale-analyses": {
        "task": "diagnosis.tasks.analysis_requeue_stale",
        "schedule": float(envint("MPOX_REQUEUE_INTERVAL_SECONDS", "60")),
    },
    "send-due-webhooks": {
        "task": "diagnosis.tasks.webhook_sweep",
        "schedule": float(envint("MPOX_WEBHOOK_SWEEP_SECONDS", "30")),
    },
}
# The address other systems reach this site at: completion webhooks carry links to it (they have no request to
# take the host from).
MPOX_PUBLIC_URL = env("MPOX_PUBLIC_URL", "http://127.0.0.1:8000").rstrip("/")
if not MPOX_PUBLIC_URL.startswith(("http://", "https://")):
    raise ImproperlyConfigured(f"MPOX_PUBLIC_URL must start with http:// or https://, got {MPOX_PUBLIC_URL!r}")
# The hospital's identifier system for its patient numbers (a URI), named in FHIR reports next to the number.
MPOX_FHIR_PATIENT_SYSTEM = env("MPOX_FHIR_PATIENT_SYSTEM", "")
if MPOX_FHIR_PATIENT_SYSTEM and not MPOX_FHIR_PATIENT_SYSTEM.startswith(("http://", "https://", "urn:")):
    raise ImproperlyConfigured("MPOX_FHIR_PATIENT_SYSTEM must be a URI (http://, https:// or urn:)")
# Completion webhooks: each try waits this long for an answer; failed tries are repeated after
# BACKOFF, 2 x BACKOFF, 4 x BACKOFF ... seconds (at most an hour apart), MAX_ATTEMPTS tries in all.
MPOX_WEBHOOK_TIMEOUT_SECONDS = envfloat("MPOX_WEBHOOK_TIMEOUT_SECONDS", "5")
MPOX_WEBHOOK_MAX_ATTEMPTS = envint("MPOX_WEBHOOK_MAX_ATTEMPTS", "8")
MPOX_WEBHOOK_BACKOFF_SECONDS = envint("MPOX_WEBHOOK_BACKOFF_SECONDS", "30")
if not 0 < MPOX_WEBHOOK_TIMEOUT_SECONDS < CELERY_TASK_SOFT_TIME_LIMIT:
    raise ImproperlyConfigured("MPOX_WEBHOOK_TIMEOUT_SECONDS must be above 0 and below CELERY_TASK_SOFT_TIME_LIMIT")
if MPOX_WEBHOOK_MAX_ATTEMPTS < 1 or MPOX_WEBHOOK_BACKOFF_SECONDS < 1:
    raise ImproperlyConfigured("MPOX_WEBHOOK_MAX_ATTEMPTS and MPOX_WEBHOOK_BACKOFF_SECONDS must be at least 1")
