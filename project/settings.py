"""Settings of the demo project (development only: do not deploy as is)."""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url

from svc_infra.websocket.djangoapp import STATIC_DIR, channel_layers_from_env

BASE_DIR = Path(__file__).resolve().parent.parent

# A development key; a deployment sets DJANGO_SECRET_KEY.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "dev-only-not-a-secret-svc-infra-demo")
DEBUG = os.environ.get("DJANGO_DEBUG", "1") == "1"
ALLOWED_HOSTS = os.environ.get("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")

INSTALLED_APPS = [
    # daphne first: its runserver serves HTTP and WebSocket through ASGI.
    "daphne",
    "django.contrib.staticfiles",
    # Before channels: its runworker refuses the in-memory layer.
    "svc_infra.websocket.djangoapp",
    "channels",
    "project",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
]

ROOT_URLCONF = "project.urls"
ASGI_APPLICATION = "project.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": []},
    }
]

# DATABASE_URL (postgres://user@host:port/name, sqlite:///path); by default a SQLite
# file next to manage.py, so that `make run` stays one command (it migrates first).
# The transactional outbox (svc_infra.websocket.djangoapp.outbox) lives here.
DATABASES = {
    "default": dj_database_url.parse(
        os.environ.get("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    )
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # WAL: the relay's reads never hold up a view's commit (nor the other way round).
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;"}
    # Tests: a file, not Django's in-memory default, whose connections never close
    # (a test's connection in another thread would outlive it).
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "db.sqlite3-test")}

# One process (runserver): the outbox relay runs inside it. With several processes
# on SQLite, keep it in one (WS_RELAY_IN_PROCESS=false elsewhere, or `ws_outbox`).
WS_RELAY_IN_PROCESS = os.environ.get("WS_RELAY_IN_PROCESS", "true")

# In-memory (one process) unless WS_REDIS_URL names a Redis: then channels_redis,
# shared with runworker and with the FastAPI twin.
CHANNEL_LAYERS = channel_layers_from_env()

# The library has no default JWT secret; the demo has a development one, which the
# environment (AUTH_JWT__SECRET) overrides.
AUTH_JWT = {"SECRET": os.environ.get("DEMO_JWT_SECRET", "svc-infra-demo-secret-do-not-deploy-0123")}

# Seconds between live dashboard updates (the spec's 5).
WS_DASHBOARD_INTERVAL = float(os.environ.get("WS_DASHBOARD_INTERVAL", "5"))

# The demo keeps history, so a page that reconnects gets what it missed
# (docs/recovery.md); WS_HISTORY_SIZE in the environment overrides it.
WS_HISTORY_SIZE = 1000

STATIC_URL = "static/"
# The browser client (svc_infra/websocket.js) ships in the package.
STATICFILES_DIRS = [STATIC_DIR]
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
