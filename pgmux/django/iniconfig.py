"""A pgmux ``pgbouncer.ini`` derived from ``settings.DATABASES``.

Takes the project's *direct* entries (those not yet marked as going through pgmux) and writes a
``[databases]`` line for each, named by its NAME (suffixed with the alias when two entries share
a NAME but not a server), plus a ``*`` fallback to the primary's server so that Django's test
runner can create and use ``test_<NAME>`` through pgmux. The ``[pgbouncer]`` section listens
where the settings helper points by default and pools in transaction mode.

``userlist()`` renders the matching auth_file from the entries' USER/PASSWORD; it is written
only on request, because it holds secrets.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["IniOptions", "Plan", "plan", "render", "render_userlist"]

_ENGINES = ("django.db.backends.postgresql",)
_MODE_NOTES = {
    "transaction": "transaction mode: a server connection is lent for one transaction at a time",
    "session": "session mode: a server connection is lent for a whole client connection",
    "statement": "statement mode: Django's atomic() blocks will be refused (see docs/django.md)",
}


@dataclass(frozen=True)
class IniOptions:
    listen_addr: str = "127.0.0.1"
    listen_port: int = 6432
    pool_mode: str = "transaction"
    default_pool_size: int = 20
    max_client_conn: int = 1000
    auth_file: str = "userlist.txt"
    admin_user: str | None = None


@dataclass
class Plan:
    """What the ini will contain: pgmux database name -> (alias, connection string)."""

    databases: dict[str, tuple[str, str]] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # user -> password
    skipped: list[str] = field(default_factory=list)  # comments on aliases left out
    fallback: str | None = None
    names: dict[str, str] = field(default_factory=dict)  # alias -> NAME on the server


def _value(text: str) -> str:
    if text and all(c.isalnum() or c in "._-/:" for c in text):
        return text
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _server(entry: Mapping[str, Any]) -> str:
    host = str(entry.get("HOST") or "")
    port = str(entry.get("PORT") or "5432")
    return (f"host={_value(host)} " if host else "") + f"port={port}"


def plan(databases: Mapping[str, Mapping[str, Any]]) -> Plan:
    result = Plan()
    servers: dict[str, str] = {}  # pgmux db name -> server, to detect clashes
    for alias, entry in databases.items():
        if entry.get("ENGINE") not in _ENGINES:
            result.skipped.append(f"{alias}: ENGINE {entry.get('ENGINE')!r} is not PostgreSQL")
            continue
        if entry.get("PGMUX") is not None:
            result.skipped.append(f"{alias}: already goes through pgmux")
            continue
        name = str(entry.get("NAME") or "")
        if not name:
            result.skipped.append(f"{alias}: no NAME")
            continue
        server = _server(entry)
        pgmux_name = name
        if servers.get(name, server) != server:
            pgmux_name = f"{name}_{alias}"
        servers[pgmux_name] = server
        result.names[alias] = name
        result.databases[pgmux_name] = (alias, f"{server} dbname={_value(name)}")
        if result.fallback is None:
            result.fallback = server
        if entry.get("USER"):
            result.users.setdefault(str(entry["USER"]), str(entry.get("PASSWORD") or ""))
    return result


def render(result: Plan, options: IniOptions) -> str:
    lines = [
        "; pgmux configuration derived from settings.DATABASES by `manage.py pgmux_config`.",
        "; Run it with: pgmux run pgbouncer.ini",
        "",
        "[databases]",
    ]
    for name, (alias, conn) in result.databases.items():
        lines.append(f"; DATABASES[{alias!r}]")
        lines.append(f"{name} = {conn}")
    if result.fallback is not None:
        lines.append("; any other database on the same server, e.g. the test runner's test_*")
        lines.append(f"* = {result.fallback}")
    admin = options.admin_user or next(iter(result.users), "")
    lines += [
        "",
        "[pgbouncer]",
        f"listen_addr = {options.listen_addr}",
        f"listen_port = {options.listen_port}",
        "auth_type = scram-sha-256",
        f"auth_file = {options.auth_file}",
        f"admin_users = {admin}",
        f"; {_MODE_NOTES.get(options.pool_mode, '')}",
        f"pool_mode = {options.pool_mode}",
        f"default_pool_size = {options.default_pool_size}",
        f"max_client_conn = {options.max_client_conn}",
    ]
    for note in result.skipped:
        lines.append(f"; skipped {note}")
    lines += ["", "; Then point Django at pgmux, in settings.py:", ";   import pgmux.django"]
    for name, (alias, _conn) in result.databases.items():
        # A renamed entry must ask pgmux for its pgmux name, not the server's.
        source = (
            f"DATABASES[{alias!r}]"
            if name == result.names[alias]
            else (f"{{**DATABASES[{alias!r}], 'NAME': {name!r}}}")
        )
        mode = "" if options.pool_mode == "transaction" else f", pool_mode={options.pool_mode!r}"
        lines.append(
            f";   DATABASES[{alias!r}] = pgmux.django.database({source}, "
            f"host={options.listen_addr!r}, port={options.listen_port}{mode})"
        )
    return "\n".join(lines) + "\n"


def render_userlist(result: Plan) -> str:
    """An auth_file for the plan's users (cleartext passwords, as PgBouncer accepts)."""
    return "".join(
        '"{}" "{}"\n'.format(user.replace('"', '""'), password.replace('"', '""'))
        for user, password in result.users.items()
    )
