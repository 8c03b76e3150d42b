"""Settings, all read from the environment (12-factor).

Development: nothing to set (or `DJANGO_DEBUG=1`); the database is a SQLite file under
`DATA_DIR`. Production: `DJANGO_DEBUG=0`, `DJANGO_SECRET_KEY`, `ALLOWED_HOSTS`, usually
`DATABASE_URL=postgres://...`; `manage.py check --deploy` is then clean.
"""
import os
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()


def _read(name, cast, **kwargs):
    """One line naming the variable, instead of a traceback from deep inside a parser."""
    try:
        return cast(name, **kwargs)
    except ImproperlyConfigured:
        raise
    except Exception as exc:  # environ raises ValueError, KeyError, ... on malformed values
        raise ImproperlyConfigured(f"{name} is malformed: {exc}") from None


def _bool(name, default):
    raw = env.str(name, default=None)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in {"1", "true", "yes", "on"}:
        return True
    if value in {"0", "false", "no", "off", ""}:
        return False
    raise ImproperlyConfigured(f"{name} must be 1/0, true/false, yes/no or on/off; got {raw!r}")


SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")
# Development unless production is asked for: `DJANGO_DEBUG=0` or a secret key. So every
# command in the README runs as printed on a fresh clone, while a deployment that sets its key
# (or DJANGO_DEBUG=0 without one, which then fails loudly) never falls back to debugging, and
# `check --deploy` on a half-configured deployment still reports DEBUG on. Debug mode also keeps
# ALLOWED_HOSTS to localhost, so a forgotten variable does not serve the public.
DEBUG = _bool("DJANGO_DEBUG", not SECRET_KEY)
DATA_DIR = Path(_read("DATA_DIR", env.path, default=str(BASE_DIR / "data")))
ARTIFACTS_DIR = Path(_read("ARTIFACTS_DIR", env.path, default=str(DATA_DIR / "artifacts")))

if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("DJANGO_SECRET_KEY must be set when DJANGO_DEBUG is off")
    SECRET_KEY = "development-only-key-never-use-in-production-0123456789abcdefghij"

ALLOWED_HOSTS = _read(
    "ALLOWED_HOSTS", env.list, default=["localhost", "127.0.0.1", "[::1]"] if DEBUG else []
)
CSRF_TRUSTED_ORIGINS = _read("CSRF_TRUSTED_ORIGINS", env.list, default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "rest_framework",
    "rest_framework.authtoken",
    "webapp",
    "labeling",
    "training",
    "chat",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "webapp.security.SecurityHeadersMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"
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
            ],
        },
    },
]


SUPPORTED_DATABASES = {"django.db.backends.sqlite3", "django.db.backends.postgresql"}


def _database():
    config = _read("DATABASE_URL", env.db_url, default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")
    if config["ENGINE"] not in SUPPORTED_DATABASES:
        raise ImproperlyConfigured("DATABASE_URL must start with sqlite:/// or postgres://")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        Path(config["NAME"]).parent.mkdir(parents=True, exist_ok=True)
        # The web process and a worker write at once: WAL lets readers go on during a write,
        # IMMEDIATE takes the write lock at BEGIN (no deadlocked upgrades), and the timeout
        # makes a writer wait for the lock instead of failing with "database is locked".
        config.setdefault("OPTIONS", {}).update(
            {
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            }
        )
        # A file, not :memory:, so a Celery worker started by the tests sees the test database;
        # one per test process, so two test runs on one machine never share it.
        config["TEST"] = {"NAME": str(DATA_DIR / f"test_db_{os.getpid()}.sqlite3")}
    else:
        # A connection per thread kept for a minute instead of one per request: opening one
        # costs PostgreSQL a process and an authentication (~10 ms here). Health checks drop a
        # kept connection that died meanwhile.
        config.setdefault("CONN_MAX_AGE", _read("DATABASE_CONN_MAX_AGE", env.int, default=60))
        config.setdefault("CONN_HEALTH_CHECKS", True)
    if test_name := env.str("TEST_DATABASE_NAME", default=""):
        config["TEST"] = {"NAME": test_name}
    return config


DATABASES = {"default": _database()}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"
# webapp.accounts: this many failed logins for one username from one address lock that pair out
# for LOGIN_LOCKOUT_SECONDS.
LOGIN_FAILURE_LIMIT = _read("LOGIN_FAILURE_LIMIT", env.int, default=5)
LOGIN_LOCKOUT_SECONDS = _read("LOGIN_LOCKOUT_SECONDS", env.int, default=900)
# webapp.wsgi: reverse proxies in front of the web server that append to X-Forwarded-For (0: the
# server is reached directly). With the right count the login limit sees people's addresses.
PROXY_COUNT = _read("DJANGO_PROXY_COUNT", env.int, default=0)

# The cache holds the login-failure counts: per process by default; with several web processes
# share one, e.g. CACHE_URL=rediscache://localhost:6379/1.
CACHES = {"default": _read("CACHE_URL", env.cache_url, default="locmemcache://")}

# Email (password reset): EMAIL_URL=smtp+tls://user:password@mail.example.com:587, or
# consolemail:// to print them. Without it the password-reset pages are a 404.
PASSWORD_RESET_ENABLED = bool(env.str("EMAIL_URL", default=""))
if PASSWORD_RESET_ENABLED:
    vars().update(_read("EMAIL_URL", env.email_url))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="rlhf-loop@localhost")

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# HTTPS hardening, on by default outside DEBUG; a deployment behind a TLS proxy sets
# DJANGO_SECURE_PROXY_SSL_HEADER=1 so Django trusts X-Forwarded-Proto.
SECURE_SSL_REDIRECT = _bool("DJANGO_SECURE_SSL_REDIRECT", not DEBUG)
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SECURE_HSTS_SECONDS = _read("DJANGO_HSTS_SECONDS", env.int, default=0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = not DEBUG
if _bool("DJANGO_SECURE_PROXY_SSL_HEADER", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# webapp.security: only the site's own static scripts and styles run; nothing inline.
CONTENT_SECURITY_POLICY = {
    "default-src": ["'self'"],
    "script-src": ["'self'"],
    "style-src": ["'self'"],
    "img-src": ["'self'", "data:"],
    "font-src": ["'self'"],
    "connect-src": ["'self'"],
    "object-src": ["'none'"],
    "base-uri": ["'self'"],
    "form-action": ["'self'"],
    "frame-ancestors": ["'none'"],
}
PERMISSIONS_POLICY = {feature: [] for feature in (
    "accelerometer", "camera", "geolocation", "gyroscope", "magnetometer", "microphone",
    "payment", "usb")}

# The JSON API: token auth for scripts and tools, session auth for the browser (with CSRF).
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser, but a body nested too deeply is a 400, not a RecursionError (a 500).
    "DEFAULT_PARSER_CLASSES": [
        "labeling.api.parsers.BoundedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "EXCEPTION_HANDLER": "rest_framework.views.exception_handler",
}

# Celery: the broker is Redis; results live in the database rows the tasks write, not in Celery.
REDIS_URL = env.str("REDIS_URL", default="redis://localhost:6379/0")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default=REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_BROKER_CONNECTION_TIMEOUT = 2
# Publishing gives up within about a second when Redis is down, so a page can say so at once.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 2,
    "interval_start": 0,
    "interval_step": 0.2,
    "interval_max": 0.5,
}
CELERY_BROKER_TRANSPORT_OPTIONS = {
    "visibility_timeout": _read("CELERY_VISIBILITY_TIMEOUT", env.int, default=3600),
    "socket_connect_timeout": 2,
}

# Training workers. The device is picked automatically (CUDA when there is one) unless named.
TRAINING_DEVICE = env.str("TRAINING_DEVICE", default="") or None
# The precision sampling runs hold the model in: auto (bf16 on CUDA with bf16, and on CPUs where
# it measures faster than fp32), float32 or bfloat16 (training.ml.device.sampling_dtype).
SAMPLING_DTYPE = env.str("SAMPLING_DTYPE", default="auto")
TRAINING_HEARTBEAT_SECONDS = _read("TRAINING_HEARTBEAT_SECONDS", env.float, default=10.0)
# A running run whose worker has not beaten for this long is marked failed (and resumable).
TRAINING_HEARTBEAT_TIMEOUT = _read("TRAINING_HEARTBEAT_TIMEOUT", env.int, default=120)
TRAINING_PROGRESS_INTERVAL = _read("TRAINING_PROGRESS_INTERVAL", env.float, default=1.0)
# The least labeled data a run may start with; below it the page refuses with the reason.
TRAINING_MIN_DEMONSTRATIONS = _read("TRAINING_MIN_DEMONSTRATIONS", env.int, default=8)
TRAINING_MIN_RANKED_TASKS = _read("TRAINING_MIN_RANKED_TASKS", env.int, default=8)
TRAINING_MIN_PROMPTS = _read("TRAINING_MIN_PROMPTS", env.int, default=4)

# The live model (`manage.py inference_worker`): its Redis (the broker's by default), device, the
# memory its loaded model versions may take (least recently used unloaded first), the most
# requests it batches into one forward pass, the prompt tokens it prefills per step between the
# running chats' tokens (0: whole prompts at once), the tokens of finished replies whose keys and
# values it keeps for the conversations' next turns (per model version; SmolLM2-135M: ~46 KB a
# token in fp32), and generations per labeler per minute.
INFERENCE_REDIS_URL = env.str("INFERENCE_REDIS_URL", default=CELERY_BROKER_URL)
INFERENCE_DEVICE = env.str("INFERENCE_DEVICE", default="") or TRAINING_DEVICE
INFERENCE_MEMORY_MB = _read("INFERENCE_MEMORY_MB", env.int, default=4096)
INFERENCE_MAX_BATCH = _read("INFERENCE_MAX_BATCH", env.int, default=16)
INFERENCE_PREFILL_CHUNK = _read("INFERENCE_PREFILL_CHUNK", env.int, default=64)
INFERENCE_PREFIX_CACHE_TOKENS = _read("INFERENCE_PREFIX_CACHE_TOKENS", env.int, default=4096)
CHAT_RATE_LIMIT_PER_MINUTE = _read("CHAT_RATE_LIMIT_PER_MINUTE", env.int, default=20)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {"rustbpe": {"level": "WARNING"}},  # it logs one line per BPE merge
}
