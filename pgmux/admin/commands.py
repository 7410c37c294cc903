"""The admin console's commands: a table of name -> handler, each returning rows.

Column names are PgBouncer's, so that psql muscle memory, monitoring queries and exporters
written for PgBouncer keep working. Handlers read the pooler's state (pool sizes are just the
sizes of its membership dicts) or call its lifecycle operations.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pgmux.config import show_config_rows
from pgmux.pool.stats import PoolStats, averages
from pgmux.protocol.errors import INVALID_PARAMETER_VALUE, UNDEFINED_OBJECT
from pgmux.protocol.messages import TYPE_OID_INT8, TYPE_OID_TEXT

if TYPE_CHECKING:
    from pgmux.proxy.pooler import Pooler

T, I = TYPE_OID_TEXT, TYPE_OID_INT8  # noqa: E741  (column type shorthands for the tables)


class AdminError(Exception):
    def __init__(self, sqlstate: str, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate
        self.message = message
        self.hint = hint


@dataclass
class Result:
    tag: str
    columns: Sequence[tuple[str, int]] | None = None
    rows: list[Sequence[object]] = field(default_factory=list)
    after: Callable[[], None] | None = None  # runs once the reply has been sent


Handler = Callable[["Pooler", list[str]], "Result | Awaitable[Result]"]


@dataclass(frozen=True)
class Command:
    handler: Handler
    admin_only: bool
    help: str


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *, admin_only: bool = False) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        COMMANDS[name] = Command(handler, admin_only, help)
        return handler

    return register


def _one_db(args: list[str]) -> str | None:
    if len(args) > 1:
        raise AdminError(INVALID_PARAMETER_VALUE, "expected at most one database name")
    return args[0].strip('"') if args else None


def _check_db(pooler: Pooler, db: str | None) -> None:
    if (
        db is not None
        and not any(p.database == db for p in pooler.pools.values())
        and db not in pooler.config.databases
    ):
        raise AdminError(UNDEFINED_OBJECT, f"no such database: {db}")


def _ts(monotonic_value: float) -> str:
    wall = time.time() - (time.monotonic() - monotonic_value)
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(wall))


# -- SHOW ------------------------------------------------------------------------------------


@command("SHOW HELP", "list the commands")
def show_help(pooler: Pooler, args: list[str]) -> Result:
    rows: list[Sequence[object]] = [(name, c.help) for name, c in sorted(COMMANDS.items())]
    return Result("SHOW", [("command", T), ("description", T)], rows)


@command("SHOW VERSION", "pgmux version")
def show_version(pooler: Pooler, args: list[str]) -> Result:
    from pgmux import __version__

    return Result("SHOW", [("version", T)], [(f"pgmux {__version__}",)])


POOL_COLUMNS = [
    ("database", T),
    ("user", T),
    ("cl_active", I),
    ("cl_waiting", I),
    ("cl_active_cancel_req", I),
    ("cl_waiting_cancel_req", I),
    ("sv_active", I),
    ("sv_active_cancel", I),
    ("sv_being_canceled", I),
    ("sv_idle", I),
    ("sv_used", I),
    ("sv_tested", I),
    ("sv_login", I),
    ("maxwait", I),
    ("maxwait_us", I),
    ("pool_mode", T),
    ("cl_pinned", I),
]


@command("SHOW POOLS", "one row per (database, user) pool")
def show_pools(pooler: Pooler, args: list[str]) -> Result:
    now = time.monotonic()
    rows: list[Sequence[object]] = []
    for pool in pooler.pools.values():
        wait = pool.max_wait(now)
        rows.append(
            (
                pool.database,
                pool.user,
                len(pool.cl_active),
                len(pool.cl_waiting),
                0,
                0,
                len(pool.sv_active),
                0,
                0,
                len(pool.sv_idle),
                len(pool.sv_used),
                len(pool.sv_tested),
                len(pool.sv_login),
                int(wait),
                int((wait % 1) * 1_000_000),
                pool.settings.pool_mode,
                sum(1 for c in pool.cl_active if c.pinned),
            )
        )
    return Result("SHOW", POOL_COLUMNS, rows)


_STAT_NAMES = [
    "xact_count",
    "query_count",
    "server_assignment_count",
    "received",
    "sent",
    "xact_time",
    "query_time",
    "wait_time",
    "client_login_count",
]


def _per_database(pooler: Pooler) -> dict[str, PoolStats]:
    totals: dict[str, PoolStats] = {}
    for pool in pooler.pools.values():
        totals.setdefault(pool.database, PoolStats()).add(pool.stats)
    return totals


@command("SHOW STATS", "traffic totals and averages per database")
def show_stats(pooler: Pooler, args: list[str]) -> Result:
    columns = [("database", T)]
    columns += [(f"total_{n}", I) for n in _STAT_NAMES]
    columns += [(f"avg_{n}", I) for n in _STAT_NAMES]
    rows: list[Sequence[object]] = []
    window = pooler.stats_window
    for db, total in sorted(_per_database(pooler).items()):
        old, seconds = window.previous(db)
        avg = averages(old, window.current(db), seconds) if old is not None else None
        row: list[object] = [db, *_stat_values(total)]
        row += [int(v) for v in _stat_values(avg)] if avg else [0] * len(_STAT_NAMES)
        rows.append(row)
    return Result("SHOW", columns, rows)


def _stat_values(stats: Any) -> list[Any]:
    return [
        stats.xact_count,
        stats.query_count,
        stats.server_assignment_count,
        stats.received,
        stats.sent,
        stats.xact_time_us,
        stats.query_time_us,
        stats.wait_time_us,
        stats.client_login_count,
    ]


@command("SHOW STATS_TOTALS", "traffic totals per database")
def show_stats_totals(pooler: Pooler, args: list[str]) -> Result:
    columns = [("database", T)] + [(f"total_{n}", I) for n in _STAT_NAMES]
    rows: list[Sequence[object]] = [
        [db, *_stat_values(total)] for db, total in sorted(_per_database(pooler).items())
    ]
    return Result("SHOW", columns, rows)


CLIENT_COLUMNS = [
    ("type", T),
    ("user", T),
    ("database", T),
    ("state", T),
    ("addr", T),
    ("port", I),
    ("local_addr", T),
    ("local_port", I),
    ("connect_time", T),
    ("request_time", T),
    ("wait", I),
    ("wait_us", I),
    ("close_needed", I),
    ("ptr", T),
    ("link", T),
    ("remote_pid", I),
    ("tls", T),
    ("application_name", T),
    ("id", I),
    ("pinned", T),
]


@command("SHOW CLIENTS", "one row per client connection")
def show_clients(pooler: Pooler, args: list[str]) -> Result:
    now = time.monotonic()
    rows: list[Sequence[object]] = []
    for client in pooler.clients:
        pool = client.pool
        if pool is not None and client.members is pool.cl_waiting:
            state, wait = "waiting", now - client.wait_start
        elif client.server is not None:
            state, wait = "active", 0.0
        else:
            state, wait = ("idle" if client.reader is None else "login"), 0.0
        server = client.server
        rows.append(
            (
                "C",
                client.user,
                client.database,
                state,
                client.addr[0],
                client.addr[1],
                client.local_addr[0],
                client.local_addr[1],
                _ts(client.connect_time),
                _ts(client.request_time),
                int(wait),
                int((wait % 1) * 1_000_000),
                0,
                f"{client.id:x}",
                f"{server.id:x}" if server else "",
                client.cancel_key[0],
                "",
                client.application_name,
                client.id,
                ",".join(client.pinned),
            )
        )
    return Result("SHOW", CLIENT_COLUMNS, rows)


SERVER_STATES = {
    "sv_active": "active",
    "sv_idle": "idle",
    "sv_used": "used",
    "sv_tested": "tested",
    "sv_login": "new",
}


@command("SHOW SERVERS", "one row per server connection")
def show_servers(pooler: Pooler, args: list[str]) -> Result:
    rows: list[Sequence[object]] = []
    for pool in pooler.pools.values():
        for list_name, state in SERVER_STATES.items():
            for server in getattr(pool, list_name):
                if not hasattr(server, "backend_pid"):
                    continue  # a connection still being opened
                client = server.client
                rows.append(
                    (
                        "S",
                        pool.user,
                        pool.database,
                        state,
                        server.addr[0],
                        server.addr[1],
                        server.local_addr[0],
                        server.local_addr[1],
                        _ts(server.connect_time),
                        _ts(server.idle_since),
                        0,
                        0,
                        int(server.close_needed),
                        f"{server.id:x}",
                        f"{client.id:x}" if client else "",
                        server.backend_pid,
                        "",
                        client.application_name if client else "",
                        server.id,
                        ",".join(client.pinned) if client else "",
                    )
                )
    return Result("SHOW", CLIENT_COLUMNS, rows)


DATABASE_COLUMNS = [
    ("name", T),
    ("host", T),
    ("port", I),
    ("database", T),
    ("force_user", T),
    ("pool_size", I),
    ("min_pool_size", I),
    ("reserve_pool", I),
    ("pool_mode", T),
    ("max_connections", I),
    ("current_connections", I),
    ("paused", I),
    ("disabled", I),
]


@command("SHOW DATABASES", "configured databases and their pools' limits")
def show_databases(pooler: Pooler, args: list[str]) -> Result:
    cfg = pooler.config
    rows: list[Sequence[object]] = []
    names = list(cfg.databases) + sorted(
        {p.database for p in pooler.pools.values()} - set(cfg.databases)
    )
    for name in names:
        entry = cfg.databases.get(name) or cfg.databases.get("*")
        if entry is None:
            continue
        pools = [p for p in pooler.pools.values() if p.database == name]
        current = sum(p.server_count for p in pools)
        rows.append(
            (
                name,
                entry.host or "",
                entry.port,
                entry.dbname or name,
                entry.user or "",
                entry.pool_size if entry.pool_size is not None else cfg.get("default_pool_size"),
                entry.min_pool_size
                if entry.min_pool_size is not None
                else cfg.get("min_pool_size"),
                entry.reserve_pool_size
                if entry.reserve_pool_size is not None
                else cfg.get("reserve_pool_size"),
                entry.pool_mode or cfg.get("pool_mode"),
                entry.max_db_connections or cfg.get("max_db_connections"),
                current,
                int(any(p.paused for p in pools)),
                0,
            )
        )
    return Result("SHOW", DATABASE_COLUMNS, rows)


@command("SHOW USERS", "users seen in pools and [users]")
def show_users(pooler: Pooler, args: list[str]) -> Result:
    names = sorted({p.user for p in pooler.pools.values()} | set(pooler.config.users))
    rows: list[Sequence[object]] = []
    for name in names:
        entry = pooler.config.users.get(name)
        rows.append((name, (entry.pool_mode if entry else None) or ""))
    return Result("SHOW", [("name", T), ("pool_mode", T)], rows)


@command("SHOW CONFIG", "every setting, its value, default and whether RELOAD changes it")
def show_config(pooler: Pooler, args: list[str]) -> Result:
    rows: list[Sequence[object]] = list(show_config_rows(pooler.config))
    return Result("SHOW", [("key", T), ("value", T), ("default", T), ("changeable", T)], rows)


@command("SHOW LISTS", "sizes of the internal lists")
def show_lists(pooler: Pooler, args: list[str]) -> Result:
    pools = list(pooler.pools.values())
    rows: list[Sequence[object]] = [
        ("databases", len(pooler.config.databases)),
        ("users", len({p.user for p in pools})),
        ("pools", len(pools)),
        ("used_clients", len(pooler.clients)),
        ("used_servers", sum(p.server_count for p in pools)),
        ("login_clients", sum(1 for c in pooler.clients if c.reader is not None)),
    ]
    return Result("SHOW", [("list", T), ("items", I)], rows)


@command("SHOW STATE", "paused / shutting down")
def show_state(pooler: Pooler, args: list[str]) -> Result:
    paused = bool(pooler.pools) and all(p.paused for p in pooler.pools.values())
    rows: list[Sequence[object]] = [
        ("active", "no" if paused else "yes"),
        ("paused", "yes" if paused else "no"),
        ("shutting_down", "yes" if pooler.shutting_down else "no"),
    ]
    return Result("SHOW", [("key", T), ("value", T)], rows)


# -- control ---------------------------------------------------------------------------------


@command(
    "PAUSE",
    "PAUSE [db]: wait for transactions to end, then close server connections",
    admin_only=True,
)
async def pause(pooler: Pooler, args: list[str]) -> Result:
    db = _one_db(args)
    _check_db(pooler, db)
    await pooler.lifecycle.pause(db)
    return Result("PAUSE")


@command("RESUME", "RESUME [db]: undo PAUSE", admin_only=True)
def resume(pooler: Pooler, args: list[str]) -> Result:
    db = _one_db(args)
    _check_db(pooler, db)
    pooler.lifecycle.resume(db)
    return Result("RESUME")


@command(
    "RECONNECT", "RECONNECT [db]: replace server connections as they become free", admin_only=True
)
def reconnect(pooler: Pooler, args: list[str]) -> Result:
    db = _one_db(args)
    _check_db(pooler, db)
    pooler.lifecycle.reconnect(db)
    return Result("RECONNECT")


@command("KILL", "KILL [db]: drop the clients and servers of db (or all)", admin_only=True)
def kill(pooler: Pooler, args: list[str]) -> Result:
    db = _one_db(args)
    _check_db(pooler, db)
    pooler.lifecycle.kill(db)
    return Result("KILL")


@command("RELOAD", "re-read the config file", admin_only=True)
def reload(pooler: Pooler, args: list[str]) -> Result:
    try:
        pooler.lifecycle.reload()
    except Exception as exc:  # the error text (file, line, key) is what the operator needs
        raise AdminError(INVALID_PARAMETER_VALUE, f"reload failed: {exc}") from None
    return Result("RELOAD")


@command("SHUTDOWN", "stop pgmux (after this reply)", admin_only=True)
def shutdown(pooler: Pooler, args: list[str]) -> Result:
    return Result("SHUTDOWN", after=lambda: pooler.lifecycle.request_shutdown(graceful=False))
