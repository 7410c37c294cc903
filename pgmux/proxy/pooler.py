"""The running pooler: listeners, pools, server launches, cancel routing and lifecycle.

One :class:`Pooler` per process owns every pool and connection. Connections call back into it
when they arrive, log in, lose their peer or close; it resolves databases and users from the
config, opens server connections for pools, and routes CancelRequests. Maintenance (timeouts,
lifetimes, min_pool_size) runs in :mod:`pgmux.proxy.maintenance`; PAUSE, RELOAD and shutdown in
:mod:`pgmux.proxy.lifecycle`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from typing import Any

from pgmux.auth.secrets import secret_kind
from pgmux.auth.userlist import load_userlist
from pgmux.config import Config, DatabaseEntry, split_list
from pgmux.pool.pool import Counters, Pool, PoolSettings
from pgmux.protocol import messages as m
from pgmux.protocol.errors import (
    ADMIN_SHUTDOWN,
    INTERNAL_ERROR,
    INVALID_CATALOG_NAME,
    PgmuxError,
    ServerError,
)
from pgmux.protocol.prepared import Registry
from pgmux.proxy.auth_query import AuthQuery
from pgmux.proxy.client import ClientConnection
from pgmux.proxy.client_login import Credentials, login
from pgmux.proxy.inspector import Inspector
from pgmux.proxy.lifecycle import Lifecycle
from pgmux.proxy.maintenance import StatsWindow
from pgmux.proxy.params import tracked_names
from pgmux.proxy.server import ServerConnection
from pgmux.proxy.server_login import ServerTarget, open_server
from pgmux.proxy.welcome import admin_welcome, client_error, copy_error, welcome

log = logging.getLogger("pgmux")

VERSION = "0.1.0"


class Pooler:
    def __init__(self, config: Config, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.clients: dict[ClientConnection, None] = {}
        self.logging_in: dict[ClientConnection, None] = {}  # login task still running
        self.pools: dict[tuple[str, str], Pool] = {}
        self.targets: dict[Pool, ServerTarget] = {}
        self.cancel_keys: dict[tuple[int, int], ClientConnection] = {}
        self.counters = Counters()
        self.servers_by_pool: dict[Pool, dict[ServerConnection, None]] = {}
        self.listeners: list[asyncio.AbstractServer] = []
        self.shutting_down = False
        self.started = time.time()
        self.auth_query = AuthQuery(self)
        self._welcome_waiters: dict[Pool, asyncio.Future[None]] = {}
        self.stats_window = StatsWindow()
        self.lifecycle = Lifecycle(self)
        self.credentials: dict[Pool, Credentials] = {}
        self.registry = Registry()
        # With workers > 1 (see runner): this worker's index, and where each one listens for
        # CancelRequests passed on by its siblings.
        self.worker_index = int(os.environ.get("PGMUX_WORKER", "0"))
        self.worker_count = int(os.environ.get("PGMUX_WORKERS", "1"))
        self.worker_dir = os.environ.get("PGMUX_WORKER_DIR", "")
        self.inspector = Inspector(self)
        self.apply_config(config)

    # -- configuration -------------------------------------------------------------------

    def apply_config(self, config: Config) -> None:
        """Take a (re)loaded config; existing pools pick up their new settings."""
        self.config = config
        self.auth_type = config.get_str("auth_type")
        self.admin_users = set(config.get_list("admin_users"))
        self.stats_users = set(config.get_list("stats_users")) | self.admin_users
        self.max_packet_size = config.get_int("max_packet_size")
        self.max_prepared_statements = config.get_int("max_prepared_statements")
        self.max_client_prepared_statements = config.get_int("max_client_prepared_statements")
        self.connect_timeout = config.get_float("server_connect_timeout") or None
        self.log_connections = config.get_bool("log_connections")
        self.log_disconnections = config.get_bool("log_disconnections")
        self.log_pooler_errors = config.get_bool("log_pooler_errors")
        self.ignore_startup_parameters = config.get_list("ignore_startup_parameters")
        self.tracked = tracked_names(config.get_list("track_extra_parameters"))
        auth_file = config.get_str("auth_file")
        self.userlist = load_userlist(auth_file) if auth_file else {}
        self.has_user_source = bool(auth_file or config.get_str("auth_user"))
        for pool in self.pools.values():
            entry = self._entry_for(pool.database)
            if entry is None:
                continue  # removed from the config: existing clients finish, no new logins
            pool.settings = self.pool_settings(entry, pool.user)
            target = self._target(
                entry, pool.database, entry.user or pool.user, self.credentials[pool]
            )
            if target != self.targets[pool]:
                # Where or as whom the pool logs in changed: replace its server connections
                # as they become free (as RECONNECT does).
                self.targets[pool] = target
                self.lifecycle.reconnect_pool(pool)

    def _entry_for(self, database: str) -> DatabaseEntry | None:
        return self.config.databases.get(database) or self.config.databases.get("*")

    def resolve_database(self, database: str) -> DatabaseEntry:
        entry = self._entry_for(database)
        if entry is None:
            raise PgmuxError(
                INVALID_CATALOG_NAME,
                f'database "{database}" does not exist',
                hint="pgmux has no [databases] entry for it (nor a '*' fallback)",
            )
        return entry

    def pool_settings(self, entry: DatabaseEntry, user: str) -> PoolSettings:
        cfg = self.config
        user_entry = cfg.users.get(user)

        def pick(db_value: Any, user_value: Any, name: str) -> Any:
            if user_value is not None:
                return user_value
            if db_value is not None:
                return db_value
            return cfg.get(name)

        u = user_entry
        return PoolSettings(
            pool_mode=pick(entry.pool_mode, u and u.pool_mode, "pool_mode"),
            pool_size=pick(entry.pool_size, u and u.pool_size, "default_pool_size"),
            min_pool_size=pick(entry.min_pool_size, None, "min_pool_size"),
            reserve_pool_size=pick(
                entry.reserve_pool_size, u and u.reserve_pool_size, "reserve_pool_size"
            ),
            reserve_pool_timeout=cfg.get_float("reserve_pool_timeout"),
            max_db_connections=pick(entry.max_db_connections, None, "max_db_connections"),
            max_user_connections=pick(None, u and u.max_user_connections, "max_user_connections"),
            server_lifetime=cfg.get_float("server_lifetime"),
            server_idle_timeout=cfg.get_float("server_idle_timeout"),
            server_check_delay=cfg.get_float("server_check_delay"),
            # "<empty>" is PgBouncer's spelling of "send an empty query"; whitespace is one.
            server_check_query=cfg.get_str("server_check_query").replace("<empty>", " "),
            server_round_robin=cfg.get_bool("server_round_robin"),
            query_timeout=pick(None, u and u.query_timeout, "query_timeout"),
            query_wait_timeout=cfg.get_float("query_wait_timeout"),
            idle_transaction_timeout=pick(
                None, u and u.idle_transaction_timeout, "idle_transaction_timeout"
            ),
            client_idle_timeout=pick(None, u and u.client_idle_timeout, "client_idle_timeout"),
            server_login_retry=cfg.get_float("server_login_retry"),
            session_state=cfg.get_str("session_state"),
        )

    # -- secrets -------------------------------------------------------------------------

    async def lookup_secret(self, user: str, database: str) -> str | None:
        secret = self.userlist.get(user)
        if secret is not None or not self.config.get_str("auth_user"):
            return secret
        if database in ("pgmux", "pgbouncer"):
            return None
        entry = self._entry_for(database)
        if entry is None:
            return None
        return await self.auth_query.lookup(entry, database, user)

    # -- pools ---------------------------------------------------------------------------

    def get_pool(
        self, entry: DatabaseEntry, database: str, user: str, credentials: Credentials
    ) -> Pool:
        server_user = entry.user or user
        key = (database, user)
        pool = self.pools.get(key)
        if pool is None:
            pool = Pool(
                database, user, self.pool_settings(entry, user), self.counters, self._launch
            )
            pool.paused = self.lifecycle.is_paused(database)
            self.pools[key] = pool
            self.servers_by_pool[pool] = {}
        target = self._target(entry, database, server_user, credentials)
        old = self.targets.get(pool)
        if old is None or _better_credentials(target, old):
            self.targets[pool] = target
            self.credentials[pool] = credentials
            pool.last_login_error = None  # new credentials deserve a fresh attempt
        return pool

    def _target(
        self, entry: DatabaseEntry, database: str, server_user: str, credentials: Credentials
    ) -> ServerTarget:
        password = entry.password if entry.user else None
        if password is None:
            stored = self.userlist.get(server_user)
            if stored is not None and secret_kind(stored) != "scram":
                password = stored
            elif not entry.user:
                password = credentials.password
        extra = tuple(
            (name, value)
            for name, value in (
                ("client_encoding", entry.client_encoding),
                ("DateStyle", entry.datestyle),
                ("TimeZone", entry.timezone),
                ("application_name", entry.application_name),
            )
            if value
        )
        use_keys = not entry.user and password is None
        return ServerTarget(
            host=entry.host,
            port=entry.port,
            dbname=entry.dbname or (database if entry.name == "*" else entry.name),
            user=server_user,
            password=password,
            client_key=credentials.client_key if use_keys else None,
            server_key=credentials.server_key if use_keys else None,
            startup_extra=extra,
        )

    def _launch(self, pool: Pool) -> None:
        placeholder = _Launching()
        pool.add_server(placeholder)
        self.loop.create_task(self._open(pool, placeholder))

    async def _open(self, pool: Pool, placeholder: Any) -> None:
        target = self.targets[pool]
        try:
            server = await open_server(self, pool, target)
        except (PgmuxError, ServerError, OSError, ConnectionError) as exc:
            pool.remove_server(placeholder)
            self._login_failed(pool, exc)
            return
        except Exception as exc:  # a bug must not leave clients waiting forever
            log.exception("unexpected error opening a server connection")
            pool.remove_server(placeholder)
            self._login_failed(pool, PgmuxError(INTERNAL_ERROR, f"internal error: {exc}"))
            return
        # The placeholder's slot (and its count) is handed over to the real connection.
        members = placeholder.members
        members.pop(placeholder, None)
        members[server] = None
        server.members = members
        pool.login_succeeded()
        if not pool.server_params:
            pool.server_params = dict(server.tracked)
            self.first_server_ready(pool)
        server.tracked = {
            name: value for name, value in server.tracked.items() if name in self.tracked.values()
        }
        self.servers_by_pool[pool][server] = None
        await self._after_login(pool, server, target)

    async def _after_login(self, pool: Pool, server: ServerConnection, target: Any) -> None:
        entry = self._entry_for(pool.database)
        connect_query = entry.connect_query if entry is not None else None
        if connect_query:
            done: asyncio.Future[ServerError | None] = self.loop.create_future()
            server.run_internal(connect_query, done.set_result)
            error = await done
            if error is not None:
                log.warning("connect_query failed on %s: %s", pool.database, error)
        if not server.closed:
            pool.server_ready(server, time.monotonic())

    def _login_failed(self, pool: Pool, exc: BaseException) -> None:
        now = time.monotonic()
        error = client_error(exc)
        log.warning("server login failed for %s/%s: %s", pool.database, pool.user, error)
        pool.login_failed(error, now)
        # Waiting clients get the server's own error now instead of waiting for a timeout.
        for client in list(pool.cl_waiting):
            client.fail(copy_error(error))
        waiter = self._welcome_waiters.pop(pool, None)
        if waiter is not None and not waiter.done():
            waiter.set_exception(copy_error(error))

    # -- client lifecycle ----------------------------------------------------------------

    def client_connected(self, client: ClientConnection) -> None:
        self.clients[client] = None
        self.logging_in[client] = None
        client.login_task = self.loop.create_task(self._login(client))

    def client_limit_reached(self, client: ClientConnection) -> bool:
        limit = self.config.get_int("max_client_conn")
        return self.shutting_down or (limit > 0 and len(self.clients) > limit)

    async def _login(self, client: ClientConnection) -> None:
        # No timer per login: the janitor enforces client_login_timeout on ``logging_in``.
        try:
            await login(self, client)
        except PgmuxError as error:
            client.fail(error)
        except ServerError as error:
            # During login every error is FATAL, as PostgreSQL's own startup errors are.
            fields = {**error.fields, "S": "FATAL", "V": "FATAL"}
            client.send(m.message(m.ERROR_RESPONSE, _server_error_body(ServerError(fields))))
            client.close(error.message)
        except (ConnectionError, OSError):
            client.close("client went away during login")
        except Exception as exc:
            log.exception("unexpected error during client login")
            client.fail(PgmuxError(INTERNAL_ERROR, f"internal error during login: {exc}"))
        finally:
            self.logging_in.pop(client, None)

    async def first_server(self, pool: Pool) -> None:
        waiter = self._welcome_waiters.get(pool)
        if waiter is None:
            waiter = self.loop.create_future()
            self._welcome_waiters[pool] = waiter
            self.launch_first_server(pool)
        await asyncio.shield(waiter)

    def launch_first_server(self, pool: Pool) -> None:
        """Open the connection a new pool's first login waits for (not while paused:
        RESUME calls this again)."""
        if pool in self._welcome_waiters and not pool.sv_login and not pool.paused:
            self._launch(pool)

    def first_server_ready(self, pool: Pool) -> None:
        waiter = self._welcome_waiters.pop(pool, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def welcome(self, client: ClientConnection, pool: Pool) -> None:
        await welcome(self, client, pool)

    async def admin_welcome(self, client: ClientConnection) -> None:
        await admin_welcome(self, client)

    def admin_data(self, client: ClientConnection, data: bytes) -> None:
        client.admin.feed(data)

    def client_closing(self, client: ClientConnection, reason: str) -> None:
        """First word of a client's end: free its server and its place in the pool."""
        self.cancel_keys.pop(client.cancel_key, None)
        if client.login_task is not None and not client.login_task.done():
            client.login_task.cancel()
        pool = client.pool
        if pool is not None:
            pool.remove_client(client)
            server = client.server
            if server is not None:
                client.server = None
                server.client = None
                self._server_after_client(pool, client, server)
        if self.log_disconnections and client.pool is not None:
            log.info(
                "client %d closing: %s@%s (%s)", client.id, client.user, client.database, reason
            )

    def _server_after_client(
        self, pool: Pool, client: ClientConnection, server: ServerConnection
    ) -> None:
        clean = client.scanner.idle and server.tx_status == m.TX_IDLE and not server.internal
        if not clean or server.closed:
            pool.remove_server(server)
            server.close("client left mid-transaction")
            pool.grow(time.monotonic())
            return
        server.resume_reading()
        # Session mode and server_reset_query_always reset only with a query to reset with;
        # session state must be cleared, or the server closed.
        routine = client.pool_mode == "session" or self.config.get_bool("server_reset_query_always")
        if (
            client.pinned
            or client.reset_due
            or (routine and self.config.get_str("server_reset_query"))
        ):
            self.reset_server(pool, server)
            return
        pool.server_ready(server, time.monotonic())

    def reset_server(self, pool: Pool, server: ServerConnection) -> None:
        """Run server_reset_query before ``server`` serves anyone else; with none, close it.

        For servers a client may have left session state on: one pinned, or one whose client
        released what it was pinned for.
        """
        reset = self.config.get_str("server_reset_query")
        if not reset:
            pool.remove_server(server)  # session state and nothing to clear it with
            server.close("session state left on it and server_reset_query is empty")
            pool.grow(time.monotonic())
            return
        pool.move(server, pool.sv_tested)
        server.run_internal(reset, lambda error: self._reset_done(pool, server, error))

    def _reset_done(self, pool: Pool, server: ServerConnection, error: ServerError | None) -> None:
        if error is not None:
            pool.remove_server(server)
            server.close("server_reset_query failed")
            return
        # DISCARD ALL resets every parameter and deallocates every statement.
        server.statements.clear()
        server.tracked = {k: v for k, v in pool.server_params.items() if k in server.tracked}
        pool.server_ready(server, time.monotonic())

    def client_lost(self, client: ClientConnection) -> None:
        self.clients.pop(client, None)
        if not client.closing:
            client.closing = True
            self.client_closing(client, "client closed the connection")

    # -- server lifecycle ----------------------------------------------------------------

    def server_lost(self, server: ServerConnection, exc: Exception | None) -> None:
        pool = server.pool
        pool.remove_server(server)
        self.servers_by_pool.get(pool, {}).pop(server, None)
        client = server.client
        if client is not None:
            server.client = None
            client.server = None
            if server.scanner.last_kind == ord("E"):
                # PostgreSQL said why before hanging up (a FATAL the client already has, as
                # after pg_terminate_backend): end the same way a direct connection would.
                client.close("server closed the connection after an error")
            else:
                client.server_died(str(exc) if exc else "the server closed the connection")
        if not self.shutting_down:
            pool.grow(time.monotonic())

    def release_database(self, dbname: str) -> None:
        """Let DROP DATABASE / CREATE DATABASE ... TEMPLATE of ``dbname`` succeed.

        PostgreSQL refuses them while sessions are connected to it, and waits a few seconds for
        exiting ones: close pgmux's idle connections to it now, busy ones when released.
        """
        for pool, target in self.targets.items():
            if target.dbname != dbname:
                continue
            for members in (pool.sv_idle, pool.sv_used):
                for server in list(members):
                    pool.remove_server(server)
                    server.close(f"database {dbname} is being dropped or copied")
            for server in pool.sv_active:
                server.close_needed = True
        self.auth_query.forget(dbname)

    # -- cancel --------------------------------------------------------------------------

    def cancel(self, pid: int, key: int) -> None:
        """Forward a CancelRequest to the server the client holds right now, if any."""
        owner = key & 0xFF
        if self.worker_count > 1 and owner != self.worker_index and owner < self.worker_count:
            path = self._worker_socket(owner)
            self.loop.create_task(_pass_cancel(path, pid, key))
            return
        client = self.cancel_keys.get((pid, key))
        if client is None or client.server is None or client.pool is None:
            return
        server = client.server
        target = self.targets.get(client.pool)
        if target is None or not server.backend_pid:
            return
        self.loop.create_task(_send_cancel(target, server.backend_pid, server.backend_key))

    # -- listening -----------------------------------------------------------------------

    async def listen(self) -> None:
        cfg = self.config
        addr = cfg.get_str("listen_addr")
        port = cfg.get_int("listen_port")
        reuse = cfg.get_bool("so_reuseport")
        if addr:
            hosts: list[str] | None = None if addr == "*" else list(split_list(addr))
            server = await self.loop.create_server(
                lambda: ClientConnection(self),
                hosts,
                port,
                reuse_port=reuse or None,
                backlog=1024,
            )
            self.listeners.append(server)
        socket_dir = cfg.get_str("unix_socket_dir")
        if socket_dir and self.worker_index == 0:  # a unix socket has one owner: worker 0
            path = os.path.join(socket_dir, f".s.PGSQL.{port}")
            _remove_stale_socket(path)
            unix = await self.loop.create_unix_server(
                lambda: ClientConnection(self, is_unix=True), path, backlog=1024
            )
            mode = cfg.get("unix_socket_mode")
            if isinstance(mode, int) and mode:
                os.chmod(path, mode)
            self.listeners.append(unix)
        if self.worker_count > 1 and self.worker_dir:
            private = await self.loop.create_unix_server(
                lambda: ClientConnection(self, is_unix=True),
                self._worker_socket(self.worker_index),
            )
            self.listeners.append(private)

    def _worker_socket(self, index: int) -> str:
        return os.path.join(self.worker_dir, f"worker-{index}.sock")

    def stop_listening(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners.clear()

    def all_servers(self) -> list[ServerConnection]:
        return [s for servers in self.servers_by_pool.values() for s in servers]

    def kill_error(self) -> PgmuxError:
        return PgmuxError(
            ADMIN_SHUTDOWN, "terminating connection due to KILL from the admin console"
        )

    def shutdown_error(self) -> PgmuxError:
        return PgmuxError(ADMIN_SHUTDOWN, "terminating connection due to pgmux shutdown")


class _Launching:
    """Stands in a pool's sv_login list (and its limits) while a connection is being opened."""

    members: dict[Any, None]


def _better_credentials(new: ServerTarget, old: ServerTarget) -> bool:
    if old.password is None and old.client_key is None:
        return new.password is not None or new.client_key is not None
    return False


def _server_error_body(error: ServerError) -> bytes:
    return b"".join(k.encode() + v.encode() + b"\x00" for k, v in error.fields.items()) + b"\x00"


def _addr(addr: tuple[str, int]) -> str:
    return f"{addr[0]}:{addr[1]}" if addr[1] else addr[0]


def _remove_stale_socket(path: str) -> None:
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)  # nobody listens: left over from a crash
    else:
        raise OSError(f"another process already listens on {path}")
    finally:
        probe.close()


async def _pass_cancel(path: str, pid: int, key: int) -> None:
    from pgmux.protocol.startup import cancel_request

    try:
        _, writer = await asyncio.open_unix_connection(path)
        writer.write(cancel_request(pid, key))
        await writer.drain()
        writer.close()
    except OSError as exc:
        log.warning("could not pass a cancel request to worker socket %s: %s", path, exc)


async def _send_cancel(target: ServerTarget, pid: int, key: int) -> None:
    from pgmux.protocol.startup import cancel_request

    try:
        if target.socket_path is not None:
            reader, writer = await asyncio.open_unix_connection(target.socket_path)
        else:
            reader, writer = await asyncio.open_connection(target.host, target.port)
        writer.write(cancel_request(pid, key))
        await writer.drain()
        await reader.read()  # PostgreSQL closes the connection when done
        writer.close()
    except OSError as exc:
        log.warning("could not forward cancel request: %s", exc)
