"""System checks (``manage.py check``) for the mistakes that bite Django behind a pooler.

==========  ==================================================================================
pgmux.E001  server-side cursors in transaction/statement mode where pgmux does not pin them
            (``session_state`` = ``allow`` or ``error``): InvalidCursorName, or refused
pgmux.E002  statement mode: every ``atomic()`` block with two statements would be refused
pgmux.E003  a replica alias that the routers send writes or migrations to
pgmux.E004  PGMUX_PRIMARY / PGMUX_REPLICAS name aliases that are not in DATABASES
pgmux.E005  pgmux has no database by the alias's NAME (and no ``*`` fallback)
pgmux.E006  ``OPTIONS["assume_role"]`` (SET ROLE) where pgmux refuses it or lets it leak
pgmux.W001  pgmux's admin console could not be asked, so the checks below could not run
pgmux.W002  Django's own pool (``OPTIONS["pool"]``) stacked on top of pgmux
pgmux.W003  persistent connections (CONN_MAX_AGE) without CONN_HEALTH_CHECKS
pgmux.W004  server-side cursors where pgmux pins them: each ``iterator()`` holds a server
            connection until the client disconnects
pgmux.W005  ``assume_role`` where pgmux pins it: no pooling for that alias
==========  ==================================================================================

The pool mode and ``session_state`` come from pgmux itself (SHOW DATABASES, USERS, CONFIG on
the admin console), not from what the settings helper assumed, so the checks catch a pgmux that
is configured differently from what the project thinks. Each pgmux is asked once per run.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from django.apps import AppConfig, apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Warning, register
from django.db import router

from pgmux.django.conf import conf, pgmux_aliases
from pgmux.django.console import (
    Console,
    ConsoleError,
    PoolFacts,
    endpoint_for,
    learn_pool_mode,
)

__all__ = ["check_pool_modes", "check_replicas", "check_settings", "register_checks"]

TAG = "pgmux"


def register_checks() -> None:
    register(TAG)(check_settings)
    register(TAG)(check_replicas)
    register(TAG)(check_pool_modes)


def check_settings(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """W002 and W003: settings that are wrong behind pgmux whatever its pool mode."""
    messages: list[CheckMessage] = []
    for alias in pgmux_aliases():
        entry = settings.DATABASES[alias]
        if (entry.get("OPTIONS") or {}).get("pool"):
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}] uses Django's connection pool on top of pgmux.",
                    hint="Remove OPTIONS['pool']: each process would hold pgmux connections for "
                    "whole requests, and pgmux already pools server connections. Use CONN_MAX_AGE "
                    "to keep connections to pgmux instead.",
                    obj=alias,
                    id="pgmux.W002",
                )
            )
        if entry.get("CONN_MAX_AGE", 0) != 0 and not entry.get("CONN_HEALTH_CHECKS", False):
            messages.append(
                Warning(
                    f"DATABASES[{alias!r}] keeps connections (CONN_MAX_AGE="
                    f"{entry.get('CONN_MAX_AGE')!r}) without CONN_HEALTH_CHECKS.",
                    hint="Set CONN_HEALTH_CHECKS = True: when pgmux restarts or closes an idle "
                    "client the first query of the next request fails instead of reconnecting.",
                    obj=alias,
                    id="pgmux.W003",
                )
            )
    return messages


def _sample_models() -> list[type[Any]]:
    return list(apps.get_models(include_auto_created=True))


def check_replicas(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E003 and E004: replica aliases must exist and the routers must never write to them."""
    messages: list[CheckMessage] = []
    replicas = conf.replicas
    for name, aliases in (("PGMUX_PRIMARY", (conf.primary,)), ("PGMUX_REPLICAS", replicas)):
        for alias in aliases:
            if alias not in settings.DATABASES:
                messages.append(
                    Error(
                        f"{name} names {alias!r}, which is not in DATABASES.",
                        obj=alias,
                        id="pgmux.E004",
                    )
                )
    if conf.primary in replicas:
        messages.append(
            Error(
                f"PGMUX_REPLICAS lists the primary {conf.primary!r}.",
                obj=conf.primary,
                id="pgmux.E004",
            )
        )
    for alias in replicas:
        if alias in settings.DATABASES and alias != conf.primary:
            messages.extend(_writable(alias))
    return messages


def _writable(alias: str) -> Iterable[CheckMessage]:
    models = _sample_models()
    for model in models:
        target = router.db_for_write(model)
        if target == alias:
            yield Error(
                f"The database routers send writes of {model._meta.label} to the replica "
                f"{alias!r}.",
                hint="db_for_write must return the primary; with DATABASE_ROUTERS = "
                "['pgmux.django.router.PrimaryReplicaRouter'] writes go to PGMUX_PRIMARY.",
                obj=alias,
                id="pgmux.E003",
            )
            return
    for model in models:
        meta = model._meta
        if router.allow_migrate(alias, meta.app_label, model_name=meta.model_name):
            yield Error(
                f"The database routers allow migrations on the replica {alias!r} "
                f"({meta.label}), so `migrate --database {alias}` would write to it.",
                hint="allow_migrate must return False for replica aliases.",
                obj=alias,
                id="pgmux.E003",
            )
            return


def check_pool_modes(
    app_configs: Sequence[AppConfig] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    """E001, E002, E005, E006 and W001, W004, W005: what pgmux's pooling means for each alias."""
    if not conf.check_console:
        return []
    messages: list[CheckMessage] = []
    unreachable: dict[str, str] = {}
    for alias in pgmux_aliases():
        entry = settings.DATABASES[alias]
        endpoint = endpoint_for(alias)
        if endpoint.label in unreachable:
            continue
        dbname, user = str(entry.get("NAME") or ""), str(entry.get("USER") or "")
        try:
            with Console(endpoint) as console:
                facts = learn_pool_mode(console, dbname, user)
        except ConsoleError as exc:
            unreachable[endpoint.label] = str(exc)
            messages.append(
                Warning(
                    f"Could not ask pgmux at {endpoint.label} for the pool mode of "
                    f"DATABASES[{alias!r}]: {exc}",
                    hint="Start pgmux, or set PGMUX_ADMIN_USER/PGMUX_ADMIN_PASSWORD to a user in "
                    "its admin_users or stats_users; PGMUX_CHECK_CONSOLE = False skips this check.",
                    obj=alias,
                    id="pgmux.W001",
                )
            )
            continue
        messages.extend(_mode_messages(alias, entry, dbname, facts))
    return messages


def _mode_messages(
    alias: str, entry: dict[str, Any], dbname: str, facts: PoolFacts | None
) -> list[CheckMessage]:
    if facts is None:
        return [
            Error(
                f"pgmux has no database {dbname!r} (DATABASES[{alias!r}]['NAME']) "
                "and no '*' entry.",
                hint="Add it to pgmux's [databases] section; `manage.py pgmux_config` prints one.",
                obj=alias,
                id="pgmux.E005",
            )
        ]
    if facts.pool_mode == "session":
        return []
    messages = _cursor_messages(alias, entry, facts) + _role_messages(alias, entry, facts)
    if facts.pool_mode == "statement":
        messages.append(
            Error(
                f"pgmux serves DATABASES[{alias!r}] in statement mode, which refuses "
                "transactions of more than one statement: transaction.atomic(), "
                "select_for_update() and saves of related objects fail.",
                hint="Run this database in transaction mode.",
                obj=alias,
                id="pgmux.E002",
            )
        )
    return messages


_CURSOR_HINT = (
    "Set DISABLE_SERVER_SIDE_CURSORS = True (pgmux.django.database() does): QuerySet.iterator() "
    "then fetches its rows in chunks without a server-side cursor."
)


def _cursor_messages(alias: str, entry: dict[str, Any], facts: PoolFacts) -> list[CheckMessage]:
    if entry.get("DISABLE_SERVER_SIDE_CURSORS", False):
        return []
    where = f"pgmux serves DATABASES[{alias!r}] in {facts.pool_mode} mode"
    if facts.session_state == "pin":
        # It works, but the pin lasts until the client disconnects: Django closes its cursor by
        # name, and only CLOSE ALL or DISCARD ALL tell pgmux that no WITH HOLD cursor is left.
        return [
            Warning(
                f"{where} with session_state = pin, and server-side cursors are enabled: each "
                "QuerySet.iterator() keeps its server connection for that client until it "
                "disconnects.",
                hint=_CURSOR_HINT,
                obj=alias,
                id="pgmux.W004",
            )
        ]
    state = facts.session_state or "unknown"
    return [
        Error(
            f"{where} (session_state = {state}), and server-side cursors are enabled: "
            "QuerySet.iterator() declares a cursor on one server connection and may fetch "
            "from another (InvalidCursorName), or is refused.",
            hint=_CURSOR_HINT,
            obj=alias,
            id="pgmux.E001",
        )
    ]


def _role_messages(alias: str, entry: dict[str, Any], facts: PoolFacts) -> list[CheckMessage]:
    role = (entry.get("OPTIONS") or {}).get("assume_role")
    if not role:
        return []
    where = f"DATABASES[{alias!r}] sets OPTIONS['assume_role'] ({role!r}), which runs SET ROLE"
    if facts.session_state == "pin":
        return [
            Warning(
                f"{where}: pgmux (session_state = pin) then keeps each client's server "
                f"connection until it disconnects, so {facts.pool_mode} pooling does not happen.",
                hint="Connect as that role instead (USER), or use session mode for this alias.",
                obj=alias,
                id="pgmux.W005",
            )
        ]
    return [
        Error(
            f"{where}: with session_state = {facts.session_state or 'unknown'} in "
            f"{facts.pool_mode} mode the role is refused, or stays on the server connection "
            "for the next client.",
            hint="Connect as that role instead (USER), or use session mode for this alias.",
            obj=alias,
            id="pgmux.E006",
        )
    ]
