"""Settings of a small project whose only purpose is to run ``manage.py test`` through pgmux.

The database is given by environment variables, set by tests/django/test_django_test_runner.py:
``RTPROJECT_DB_HOST``/``PORT``/``USER``/``PASSWORD``/``NAME``. With pgmux in transaction mode
and a ``*`` entry in its [databases], the test databases Django creates (``test_<NAME>``, and
``test_<NAME>_<n>`` with ``--parallel``) route through pgmux like any other. The role needs
CREATEDB. ``RTPROJECT_TRACE_DIR``, when set, is where the tests record which database each
worker used.
"""

from __future__ import annotations

import os

SECRET_KEY = "rtproject-tests-only"
DEBUG = False
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "rtapp",
]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "HOST": os.environ["RTPROJECT_DB_HOST"],
        "PORT": os.environ["RTPROJECT_DB_PORT"],
        "USER": os.environ["RTPROJECT_DB_USER"],
        "PASSWORD": os.environ["RTPROJECT_DB_PASSWORD"],
        "NAME": os.environ.get("RTPROJECT_DB_NAME", "rtproject"),
        # Transaction pooling: a server-side cursor cannot outlive its transaction.
        "DISABLE_SERVER_SIDE_CURSORS": True,
    }
}
RTPROJECT_TRACE_DIR = os.environ.get("RTPROJECT_TRACE_DIR", "")
