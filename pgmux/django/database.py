"""The settings helper: one ``DATABASES`` entry for a database reached through pgmux.

``database(url_or_dict, ...)`` returns a complete entry for ``django.db.backends.postgresql``
whose HOST/PORT are pgmux's, with the settings a pooled connection needs (see docs/django.md
for the reasoning behind each default). It only uses the standard library, so it can be called
from settings.py before Django is set up. The entry carries a ``"PGMUX"`` key that Django
ignores and ``pgmux.django`` reads: it marks the alias as pooled (the system checks, the health
view and ``pgmux_status`` look only at marked aliases) and records what the helper assumed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = ["DEFAULT_PGMUX_PORT", "POOL_MODES", "database", "parse_url"]

DEFAULT_PGMUX_PORT: Final = 6432
POOL_MODES: Final = ("session", "transaction", "statement")
ENGINE: Final = "django.db.backends.postgresql"
_SCHEMES: Final = ("postgres", "postgresql", "pgmux")
# Keys of a DATABASES entry that the helper owns; anything else in a dict input is kept as is.
_CONNECTION_KEYS: Final = ("NAME", "USER", "PASSWORD", "HOST", "PORT")
_LIBPQ_TO_DJANGO: Final = {
    "dbname": "NAME", "user": "USER", "password": "PASSWORD", "host": "HOST", "port": "PORT",
}  # fmt: skip


class SettingsError(ValueError):
    """A URL or dict the helper cannot turn into a DATABASES entry."""


def parse_url(url: str) -> dict[str, Any]:
    """``postgres://user:password@host:port/name?key=value`` as a DATABASES-style dict.

    Query parameters become ``OPTIONS`` (libpq keywords such as ``sslmode`` or
    ``application_name``). A host that is percent-encoded and starts with ``/`` is a Unix socket
    directory. Without a port, pgmux's default 6432 is assumed, not PostgreSQL's 5432.
    """
    parts = urlsplit(url)
    if parts.scheme not in _SCHEMES:
        raise SettingsError(f"unsupported URL scheme {parts.scheme!r}; use postgres://")
    try:
        port = parts.port
    except ValueError as exc:
        raise SettingsError(f"invalid port in {url!r}") from exc
    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise SettingsError(f"no database name in {url!r}")
    return {
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": _url_host(parts.netloc, parts.hostname),
        "PORT": port or DEFAULT_PGMUX_PORT,
        "OPTIONS": dict(parse_qsl(parts.query)),
    }


def _url_host(netloc: str, hostname: str | None) -> str:
    # urlsplit lower-cases hostname and knows nothing of socket directories, which libpq lets a
    # URL spell percent-encoded: postgres://u@%2Frun%2Fpgmux/app.
    raw = netloc.rpartition("@")[2]
    if raw.upper().startswith("%2F"):
        return unquote(raw.partition(":")[0])
    return hostname or ""


def _from_mapping(value: Mapping[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = {}
    for key, item in value.items():
        entry[_LIBPQ_TO_DJANGO.get(key, key)] = item
    entry["OPTIONS"] = dict(entry.get("OPTIONS") or {})
    return entry


def _default_application_name() -> str:
    # The project's package name ("mysite" for mysite.settings) is what an operator looking at
    # SHOW CLIENTS or pg_stat_activity wants to see; it is set before settings.py is imported.
    module = os.environ.get("DJANGO_SETTINGS_MODULE", "")
    return module.split(".", 1)[0] or "django"


def database(
    url: str | Mapping[str, Any],
    *,
    pool_mode: str = "transaction",
    host: str | None = None,
    port: int | None = None,
    conn_max_age: int | None = 60,
    health_checks: bool = True,
    application_name: str | None = None,
    connect_timeout: int | None = 5,
    replica: bool = False,
    admin_database: str = "pgmux",
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``DATABASES`` entry for a database behind pgmux.

    ``url`` is a ``postgres://`` URL or a dict (Django's upper-case keys or libpq's lower-case
    ones, so an existing direct entry can be passed along with ``host``/``port`` pointing at
    pgmux). ``pool_mode`` is the mode you run pgmux in; ``manage.py check`` compares it with
    what pgmux reports. In transaction and statement mode server-side cursors are disabled,
    because a cursor lives on one server connection and the next statement may get another.

    ``conn_max_age`` defaults to 60 s: a connection to pgmux costs a login (a TCP handshake and
    SCRAM) but no server connection while idle, so keeping it is cheap and saves that login.
    Health checks are on so that a connection pgmux closed (restart, client_idle_timeout) is
    replaced before the request uses it. Pass ``conn_max_age=0`` under ASGI, where Django opens
    a connection per request anyway.
    """
    if pool_mode not in POOL_MODES:
        raise SettingsError(f"pool_mode must be one of {', '.join(POOL_MODES)}, not {pool_mode!r}")
    entry = parse_url(url) if isinstance(url, str) else _from_mapping(url)
    if host is not None:
        entry["HOST"] = host
    if port is not None:
        entry["PORT"] = port
    for key in _CONNECTION_KEYS:
        entry.setdefault(key, "")
    if not entry["NAME"]:
        raise SettingsError("a database behind pgmux needs a NAME (the pgmux database name)")
    if not entry["PORT"]:
        entry["PORT"] = DEFAULT_PGMUX_PORT
    entry["ENGINE"] = ENGINE
    entry["CONN_MAX_AGE"] = conn_max_age
    entry["CONN_HEALTH_CHECKS"] = health_checks
    # A server-side cursor (QuerySet.iterator()) is a named portal on one server connection;
    # in transaction mode the FETCH that follows may run on another one and fail with
    # InvalidCursorName.
    entry["DISABLE_SERVER_SIDE_CURSORS"] = pool_mode != "session"
    opts: dict[str, Any] = entry["OPTIONS"]
    opts.update(options or {})
    opts.setdefault("application_name", application_name or _default_application_name())
    if connect_timeout is not None:
        # Without it a stopped pgmux makes each request hang for the OS's TCP timeout.
        opts.setdefault("connect_timeout", connect_timeout)
    entry["PGMUX"] = {
        "POOL_MODE": pool_mode,
        "REPLICA": replica,
        "ADMIN_DATABASE": admin_database,
    }
    return entry
