"""Settings of the example shop, driven by environment variables so one project serves every
set-up of ``pgmux demo`` and of tests/django.

DJANGOAPP_DATABASE_URL   where the database is (default: pgmux on 127.0.0.1:6432, db djangoapp)
DJANGOAPP_MODE           ``pgmux`` (default): through pgmux, via pgmux.django.database();
                         ``direct``: straight to PostgreSQL; ``native-pool``: direct, with
                         Django's own psycopg_pool (OPTIONS["pool"])
DJANGOAPP_CONN_MAX_AGE   CONN_MAX_AGE in seconds (default: 0 direct, the helper's 60 via pgmux)
DJANGOAPP_POOL_MODE      the pgmux pool mode the helper assumes (default transaction)
DJANGOAPP_REPLICA_URLS   space-separated URLs of read replicas (aliases replica1, replica2 ...);
                         with any, reads go through pgmux.django's PrimaryReplicaRouter
PGMUX_ADMIN_USER / PGMUX_ADMIN_PASSWORD   login for pgmux's admin console
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pgmux.django import database
from pgmux.django.database import parse_url

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = os.environ.get("DJANGOAPP_SECRET_KEY", "example-only-not-secret")
DEBUG = os.environ.get("DJANGOAPP_DEBUG") == "1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]

INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "pgmux.django",
    "shop",
]
MIDDLEWARE = [
    "pgmux.django.middleware.PgmuxMiddleware",
    "shop.middleware.JsonErrorsMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "djangoapp.urls"
WSGI_APPLICATION = "djangoapp.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
STATIC_URL = "static/"  # LiveServerTestCase serves static files and needs a prefix
LOGGING = {"version": 1, "disable_existing_loggers": False}

_URL = os.environ.get("DJANGOAPP_DATABASE_URL", "postgres://app:app@127.0.0.1:6432/djangoapp")
_MODE = os.environ.get("DJANGOAPP_MODE", "pgmux")
_AGE = os.environ.get("DJANGOAPP_CONN_MAX_AGE")


def _direct(url: str) -> dict[str, Any]:
    entry = parse_url(url)
    entry.update(ENGINE="django.db.backends.postgresql", CONN_MAX_AGE=int(_AGE or 0))
    return entry


def _entry(url: str, *, replica: bool = False) -> dict[str, Any]:
    if _MODE == "pgmux":
        kwargs: dict[str, Any] = {}
        if _AGE is not None:
            kwargs["conn_max_age"] = int(_AGE)
        pool_mode = os.environ.get("DJANGOAPP_POOL_MODE", "transaction")
        return database(url, pool_mode=pool_mode, replica=replica, **kwargs)
    entry = _direct(url)
    if _MODE == "native-pool":
        entry["OPTIONS"]["pool"] = True  # psycopg_pool's defaults: 4 connections per process
    elif _MODE != "direct":
        raise ValueError(f"DJANGOAPP_MODE must be pgmux, direct or native-pool, not {_MODE!r}")
    return entry


DATABASES = {"default": _entry(_URL)}
for _number, _replica_url in enumerate(os.environ.get("DJANGOAPP_REPLICA_URLS", "").split(), 1):
    DATABASES[f"replica{_number}"] = _entry(_replica_url, replica=True)
if len(DATABASES) > 1:
    DATABASE_ROUTERS = ["pgmux.django.router.PrimaryReplicaRouter"]

PGMUX_ADMIN_USER = os.environ.get("PGMUX_ADMIN_USER")
PGMUX_ADMIN_PASSWORD = os.environ.get("PGMUX_ADMIN_PASSWORD")
if "DJANGOAPP_READ_YOUR_WRITES_SECONDS" in os.environ:
    PGMUX_READ_YOUR_WRITES_SECONDS = float(os.environ["DJANGOAPP_READ_YOUR_WRITES_SECONDS"])
if "DJANGOAPP_REPLICA_CHECK_INTERVAL" in os.environ:
    PGMUX_REPLICA_CHECK_INTERVAL = float(os.environ["DJANGOAPP_REPLICA_CHECK_INTERVAL"])
