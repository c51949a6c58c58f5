"""Telemed settings, read top to bottom.

Every value has a default that runs on a laptop; an environment variable switches it to the
real service (see the README's table of variables). Behaviour changes only through variables.
"""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from telemed.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("TELEMED_VAR_DIR", str(BASE_DIR / "var"))).resolve()

# --- Core -----------------------------------------------------------------------------------

DEBUG = env_bool("DEBUG", True)
_DEV_SECRET_KEY = "django-insecure-development-key-only-used-when-DEBUG-is-on-0123456789"
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = _DEV_SECRET_KEY

# The demo world (known passwords!) exists only in development, decided once at start-up.
DEMO_DATA_ALLOWED = DEBUG

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# The address of the site as users reach it; used in e-mails and printed links.
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "channels",
    "rest_framework",
    "rest_framework.authtoken",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "axes",
    "telemed",
    "accounts",
    "ehr",
    "consults",
    "imaging",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",
    "accounts.middleware.RequestContextMiddleware",
    "accounts.middleware.UserPreferencesMiddleware",
    "accounts.middleware.TwoFactorRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Axes last: it turns a lock-out into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "telemed.urls"
ASGI_APPLICATION = "telemed.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.template.context_processors.tz",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "accounts.context_processors.roles",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------

DATABASES = {
    "default": dj_database_url.config(
        default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}",
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 0),
        # A kept connection is checked before each request or task reuses it (a restarted
        # PostgreSQL). The Celery worker keeps its connections (Procfile): opening one per
        # task costs PostgreSQL a new backend process.
        conn_health_checks=True,
    ),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # Several processes (web, worker, beat, DICOM server) share one SQLite file: wait for
    # locks, use WAL, and take the write lock when a transaction begins — a transaction that
    # starts reading and later writes cannot wait for the lock and fails at once with
    # "database is locked" when another process writes (seen with parallel ingest).
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 20,
            # WAL with synchronous=NORMAL: a commit survives a crash of the process, and only
            # a power cut may lose the last moments (SQLite's recommended pairing; a commit no
            # longer waits for the disk). PostgreSQL is the production database.
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            "transaction_mode": "IMMEDIATE",
        }
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Redis: channel layer, cache, Celery -----------------------------------------------------

REDIS_URL = env_str("REDIS_URL")
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # No socket timeout. redis-py's default read timeout (5 s) equals channels_redis's
        # blocking-pop timeout (5 s): an idle receiver (the media broker, a quiet WebSocket)
        # then dies with "Timeout reading from ...". And with any socket timeout redis-py
        # sends through asyncio.wait_for, which on Python 3.11 loses a cancellation that
        # arrives as the send completes: a closed WebSocket's consumer then never ends
        # (tests/telemed/test_channel_layer.py shows both). The server ends every
        # blocking pop after 5 s; keepalive finds a dead Redis.
        "CONFIG": {
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": None,
                    "socket_connect_timeout": 10,
                    "socket_keepalive": True,
                }
            ]
        },
    }
    if REDIS_URL
    else {"BACKEND": "channels.layers.InMemoryChannelLayer"},
}
CACHES = {
    "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    if REDIS_URL
    else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"},
}
CELERY_BROKER_URL = REDIS_URL or "memory://"
CELERY_RESULT_BACKEND = REDIS_URL or None
CELERY_TASK_ALWAYS_EAGER = not REDIS_URL
CELERY_TASK_EAGER_PROPAGATES = True
CELERY_TASK_DEFAULT_QUEUE = "default"
# Ingest and rendering have their own queues, so that a big study never delays reminders.
CELERY_TASK_ROUTES = {
    "imaging.tasks.ingest_*": {"queue": "ingest"},
    "imaging.tasks.render_*": {"queue": "media"},
    "imaging.tasks.transcode_*": {"queue": "media"},
    # Composing a call's recording decodes and encodes video: minutes of CPU per hour.
    "consults.recording_tasks.*": {"queue": "media"},
    "imaging.upload_tasks.*": {"queue": "ingest"},
    "imaging.export_tasks.*": {"queue": "media"},
}
CELERY_TASK_ACKS_LATE = True
# Celery's Django fixup closes every database connection before and after each task unless
# this is set (then it closes them every this many tasks): a new SQLite connection per task,
# a new PostgreSQL backend per task. The worker keeps its connections as DATABASE_CONN_MAX_AGE
# says instead; telemed/celery.py closes old or broken ones between tasks, as Django does
# between requests.
CELERY_DB_REUSE_MAX = 1000
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULER = "telemed.celery:HeartbeatScheduler"
# Beat wakes at least this often, so its heartbeat stays fresh even with a sparse schedule.
CELERY_BEAT_MAX_LOOP_INTERVAL = 10
CELERY_BEAT_SCHEDULE: dict[str, dict] = {}
# Appointment reminders (24 hours and 15 minutes before), each sent once: every minute.
CELERY_BEAT_SCHEDULE["appointment-reminders"] = {
    "task": "consults.tasks.send_due_reminders",
    "schedule": 60.0,
}
# Received files whose ingest task was lost (a broker restart) are picked up again.
CELERY_BEAT_SCHEDULE["ingest-waiting-files"] = {
    "task": "imaging.tasks.ingest_waiting_files",
    "schedule": 120.0,
}
# Study exports (ZIPs with a DICOMDIR) are kept for a day: removed hourly after that.
CELERY_BEAT_SCHEDULE["remove-expired-exports"] = {
    "task": "imaging.export_tasks.remove_expired_exports",
    "schedule": 3600.0,
}
# Staging files of browser uploads abandoned for a day are removed: every hour.
CELERY_BEAT_SCHEDULE["remove-abandoned-uploads"] = {
    "task": "imaging.upload_tasks.remove_abandoned_uploads",
    "schedule": 3600.0,
}

# Call recordings nobody stopped (the broker died) or whose composition was lost: every 10 min.
CELERY_BEAT_SCHEDULE["sweep-recordings"] = {
    "task": "consults.recording_tasks.sweep_recordings",
    "schedule": 600.0,
}

# The processes `make run` starts; /healthz reports each. Later parts (media broker, DICOM
# server, HL7 listener) add their names here as they join the Procfile.
PLATFORM_PROCESSES = ["web", "worker", "beat"]
PLATFORM_PROCESSES.append("hl7")
HL7_HOST = env_str("HL7_HOST", "127.0.0.1")
HL7_PORT = env_int("HL7_PORT", 2575)
# MLLP has no authentication: only these addresses (or networks, "10.1.0.0/24") may connect.
HL7_ALLOWED_CLIENTS = env_list("HL7_ALLOWED_CLIENTS", ["127.0.0.1"])
PLATFORM_PROCESSES.append("dicom")
PLATFORM_PROCESSES.append("media")

# --- Imaging (DICOM) --------------------------------------------------------------------------

# The DIMSE server (`manage.py dicomserver`): our AE title, address and port. Only AE titles
# registered for an organization (imaging.DicomNode, in the admin) may associate.
DICOM_AE_TITLE = env_str("DICOM_AE_TITLE", "TELEMED")
DICOM_HOST = env_str("DICOM_HOST", "127.0.0.1")
DICOM_PORT = env_int("DICOM_PORT", 11112)
# C-STORE requests are read and answered by our own lane in each association's reader thread
# (imaging/dimse_fast.py); False leaves every message to pynetdicom (slower, same result).
DICOM_FAST_STORE = env_bool("DICOM_FAST_STORE", True)
# Browser uploads: the largest single file and the largest total of one archive unpacked
# (an archive bomb is refused, not unpacked).
IMAGING_MAX_FILE_BYTES = env_int("IMAGING_MAX_FILE_BYTES", 2 * 2**30)
IMAGING_MAX_ARCHIVE_BYTES = env_int("IMAGING_MAX_ARCHIVE_BYTES", 8 * 2**30)
# Chunked browser uploads wait here (a local disk, not object storage) until their last chunk;
# an upload untouched for IMAGING_UPLOAD_EXPIRY_HOURS is abandoned and its staging file removed.
IMAGING_UPLOAD_DIR = Path(env_str("IMAGING_UPLOAD_DIR", str(VAR_DIR / "uploads")))
IMAGING_UPLOAD_EXPIRY_HOURS = env_int("IMAGING_UPLOAD_EXPIRY_HOURS", 24)
# Recordings of video sessions: the media broker writes each participant's raw media here,
# the Celery worker reads it to compose the MP4 (then removes it). A local disk both the
# broker and the worker see (the same machine, or a shared volume), not object storage.
RECORDING_DIR = Path(env_str("RECORDING_DIR", str(VAR_DIR / "recordings")))
HEARTBEAT_MAX_AGE_SECONDS = env_int("HEARTBEAT_MAX_AGE_SECONDS", 60)

# --- Accounts, authentication, two-factor, lock-out -----------------------------------------

AUTH_USER_MODEL = "accounts.User"
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "accounts:login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "accounts:login"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 10},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
# Staff roles (everyone but patients) must use TOTP. Off by default only in development, so
# that the demo logins work without an authenticator app.
TWO_FACTOR_REQUIRED_FOR_STAFF = env_bool("TWO_FACTOR_REQUIRED_FOR_STAFF", not DEBUG)
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Telemed")
# A password accepted but a code not yet given: the half-done login expires after this.
TWO_FACTOR_PENDING_SECONDS = 300

AXES_FAILURE_LIMIT = env_int("LOGIN_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("LOGIN_LOCKOUT_MINUTES", 15))
# Lock the account, not the address: a rural clinic's staff share one NAT address, and one
# mistyping colleague must not lock out the whole clinic.
AXES_LOCKOUT_PARAMETERS = ["username"]
SILENCED_SYSTEM_CHECKS = ["axes.W006"]
AXES_USERNAME_CALLABLE = "accounts.lockout.lockout_username"
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "accounts/locked_out.html"
AXES_VERBOSE = False
AXES_DISABLE_ACCESS_LOG = True  # successful log-ins are in our own audit log
# Behind a reverse proxy the client address comes from X-Forwarded-For (see README).
AXES_IPWARE_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
AXES_IPWARE_META_PRECEDENCE_ORDER = ["HTTP_X_FORWARDED_FOR", "REMOTE_ADDR"]

SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 12 * 3600)

# --- Internationalization ---------------------------------------------------------------------

LANGUAGE_CODE = env_str("LANGUAGE_CODE", "ru")
LANGUAGES = [
    ("ky", _("Kyrgyz")),
    ("ru", _("Russian")),
    ("en", _("English")),
]
LOCALE_PATHS = [BASE_DIR / "telemed" / "locale"]
USE_I18N = True
TIME_ZONE = env_str("TIME_ZONE", "Asia/Bishkek")
USE_TZ = True

# --- Static and uploaded files --------------------------------------------------------------

STATIC_URL = "/static/"
NODE_MODULES = BASE_DIR / "node_modules"
# Browser libraries installed by npm (package.json), served as they are.
STATICFILES_DIRS = [("vendor/uplot", NODE_MODULES / "uplot" / "dist")]
# A TrueType font with Cyrillic and the Kyrgyz letters (ң, ө, ү) for PDF documents.
PDF_FONT_DIR = Path(env_str("PDF_FONT_DIR", str(NODE_MODULES / "dejavu-fonts-ttf" / "ttf")))
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "static")))
MEDIA_URL = "/media/"
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
# Files (received DICOM, renditions, documents) go through Django's storage API: the
# filesystem under MEDIA_ROOT by default, S3-compatible object storage when S3_BUCKET is set
# (django-storages; credentials from S3_ACCESS_KEY_ID/S3_SECRET_ACCESS_KEY or the usual AWS
# variables and instance roles).
S3_BUCKET = env_str("S3_BUCKET")
_DEFAULT_STORAGE: dict = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
if S3_BUCKET:
    _DEFAULT_STORAGE = {
        "BACKEND": "storages.backends.s3.S3Storage",
        "OPTIONS": {
            "bucket_name": S3_BUCKET,
            "endpoint_url": env_str("S3_ENDPOINT_URL") or None,
            "region_name": env_str("S3_REGION") or None,
            "access_key": env_str("S3_ACCESS_KEY_ID") or None,
            "secret_key": env_str("S3_SECRET_ACCESS_KEY") or None,
            "default_acl": None,
            "querystring_auth": True,
            "file_overwrite": False,
        },
    }
STORAGES = {
    "default": _DEFAULT_STORAGE,
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# --- E-mail ---------------------------------------------------------------------------------

EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Telemed <noreply@telemed.localhost>")
SERVER_EMAIL = DEFAULT_FROM_EMAIL
SMS_BACKEND = env_str("SMS_BACKEND", "consults.sms.ConsoleSmsBackend")

# --- REST API -------------------------------------------------------------------------------

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "accounts.api_auth.BearerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 50,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Telemed API",
    "DESCRIPTION": "Telemedicine platform: accounts, patients, audit. "
    "Authenticate with `Authorization: Bearer <token>` (`manage.py api_token EMAIL`).",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1",
}

# --- Video sessions (WebRTC) ----------------------------------------------------------------

# ICE servers (STUN, TURN with credentials) for the call page's RTCPeerConnection, as JSON:
# [{"urls": "turn:turn.clinic.kg:3478", "username": "u", "credential": "p"}]. None by
# default: browsers on one network connect directly, and no public server sees our calls.
try:
    WEBRTC_ICE_SERVERS = json.loads(env_str("WEBRTC_ICE_SERVERS") or "[]")
except ValueError:
    raise ImproperlyConfigured("WEBRTC_ICE_SERVERS is not a JSON list") from None
if not isinstance(WEBRTC_ICE_SERVERS, list):
    raise ImproperlyConfigured("WEBRTC_ICE_SERVERS is not a JSON list")
# The TURN server's shared secret (coturn: use-auth-secret, static-auth-secret): TURN entries
# above without a username then get short-lived credentials per call page and broker room
# (consults/services/ice.py), valid this long.
WEBRTC_TURN_SECRET = env_str("WEBRTC_TURN_SECRET")
WEBRTC_TURN_CREDENTIAL_SECONDS = env_int("WEBRTC_TURN_CREDENTIAL_SECONDS", 12 * 3600)

# --- Security (production: DEBUG off) -------------------------------------------------------

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", not DEBUG)
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", not DEBUG)
CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", not DEBUG)
LANGUAGE_COOKIE_SECURE = SESSION_COOKIE_SECURE
SECURE_REFERRER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"axes": {"level": "WARNING"}, "fontTools": {"level": "WARNING"}},
}
