"""Talking to pgmux's admin console from Django: SHOW POOLS, DATABASES, USERS, CONFIG ...

The console is the virtual database ``pgmux`` on pgmux's own host and port, and speaks only the
simple query protocol, so queries go through a ``psycopg.ClientCursor``. ``endpoint_for(alias)``
derives where and as whom to log in from ``DATABASES[alias]`` and ``PGMUX_ADMIN_*``; the user
must be in pgmux's ``admin_users`` or ``stats_users``. ``learn_pool_mode`` resolves the mode a
Django alias really gets, with PgBouncer's precedence: the user's, then the database's, then
the global ``pool_mode``, along with what pgmux does about session state (``session_state``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from django.conf import settings

from pgmux.django.conf import conf, pgmux_options

__all__ = ["Console", "ConsoleError", "Endpoint", "PoolFacts", "endpoint_for", "learn_pool_mode"]

Row = dict[str, Any]


class ConsoleError(Exception):
    """The console could not be reached or refused a command; the text says which and why."""


@dataclass(frozen=True)
class Endpoint:
    """Where one pgmux listens and how to log in to its console."""

    host: str
    port: int
    user: str
    password: str
    dbname: str = "pgmux"

    @property
    def label(self) -> str:
        return f"{self.host or 'localhost'}:{self.port}"

    def conninfo(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "application_name": "pgmux.django",
        }
        if self.password:
            params["password"] = self.password
        return params


def endpoint_for(alias: str) -> Endpoint:
    """The console of the pgmux that ``DATABASES[alias]`` connects to."""
    entry = settings.DATABASES[alias]
    marker = pgmux_options(alias) or {}
    return Endpoint(
        host=str(entry.get("HOST") or ""),
        port=int(entry.get("PORT") or 6432),
        user=conf.admin_user or str(entry.get("USER") or ""),
        password=(conf.admin_password or "")
        if conf.admin_user
        else str(entry.get("PASSWORD") or ""),
        dbname=str(marker.get("ADMIN_DATABASE") or "pgmux"),
    )


class Console:
    """One console session; ``with Console(endpoint) as c: c.show("POOLS")``."""

    def __init__(self, endpoint: Endpoint, timeout: float | None = None) -> None:
        self.endpoint = endpoint
        self.timeout = conf.console_timeout if timeout is None else timeout
        self._conn: psycopg.Connection[Any] | None = None

    def __enter__(self) -> Console:
        try:
            # connect_timeout is whole seconds; round up so that 0.5 does not mean "forever".
            self._conn = psycopg.connect(
                **self.endpoint.conninfo(),
                autocommit=True,  # the console has no transactions
                connect_timeout=max(1, int(self.timeout + 0.999)),
            )
        except psycopg.Error as exc:
            where = f"pgmux console at {self.endpoint.label}"
            raise ConsoleError(f"{where}: {_first_line(exc)}") from exc
        return self

    def __exit__(self, *exc: object) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def show(self, what: str) -> list[Row]:
        """``SHOW what`` as a list of dicts keyed by PgBouncer's column names."""
        if self._conn is None:
            raise RuntimeError("use Console as a context manager")
        try:
            with psycopg.ClientCursor(self._conn) as cur:
                cur.execute(f"SHOW {what}")
                names = [col.name for col in cur.description or ()]
                return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]
        except psycopg.Error as exc:
            raise ConsoleError(f"SHOW {what} on {self.endpoint.label}: {_first_line(exc)}") from exc


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def config_value(rows: list[Row], key: str) -> str | None:
    for row in rows:
        if row.get("key") == key:
            return str(row.get("value"))
    return None


def database_row(rows: list[Row], name: str) -> Row | None:
    """The SHOW DATABASES row serving ``name``: its own entry, else the ``*`` fallback."""
    by_name = {str(row.get("name")): row for row in rows}
    return by_name.get(name) or by_name.get("*")


@dataclass(frozen=True)
class PoolFacts:
    """What pgmux does with one (database, user): its pool mode, and its ``session_state``
    (``pin``, ``error`` or ``allow``; None from a pgmux too old to have the setting)."""

    pool_mode: str
    session_state: str | None


def learn_pool_mode(console: Console, dbname: str, user: str) -> PoolFacts | None:
    """How pgmux pools (dbname, user); None when pgmux has no such database."""
    row = database_row(console.show("DATABASES"), dbname)
    if row is None:
        return None
    config = console.show("CONFIG")
    mode = str(row.get("pool_mode") or config_value(config, "pool_mode") or "session")
    for user_row in console.show("USERS"):
        if user_row.get("name") == user and user_row.get("pool_mode"):
            mode = str(user_row["pool_mode"])
    return PoolFacts(mode, config_value(config, "session_state"))
