"""auth_query: look a user's secret up in PostgreSQL through the auth_user's connection.

One connection per (host, port, dbname), opened on first use, used by one lookup at a time and
reopened after a failure. The user name travels as a bound parameter of the extended protocol,
never spliced into SQL text.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from typing import TYPE_CHECKING

from pgmux.config import DatabaseEntry
from pgmux.pool.pool import Counters, Pool, PoolSettings
from pgmux.protocol import messages as m
from pgmux.protocol.errors import CONNECTION_FAILURE, PgmuxError, ServerError
from pgmux.proxy.buffers import MessageReader
from pgmux.proxy.server import ServerConnection
from pgmux.proxy.server_login import ServerTarget, open_server

if TYPE_CHECKING:
    from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux.auth")


def extended_query(sql: str, params: list[str]) -> bytes:
    """Parse/Bind/Execute/Sync for an unnamed statement with text parameters."""
    parse = m.message(b"P", b"\x00" + m.cstring(sql) + struct.pack("!h", 0))
    values = b"".join(struct.pack("!i", len(p.encode())) + p.encode() for p in params)
    bind = m.message(
        b"B", b"\x00\x00" + struct.pack("!hh", 0, len(params)) + values + struct.pack("!h", 0)
    )
    execute = m.message(b"E", b"\x00" + struct.pack("!i", 0))
    return parse + bind + execute + m.SYNC_MESSAGE


class AuthQuery:
    def __init__(self, pooler: Pooler) -> None:
        self.pooler = pooler
        self._connections: dict[tuple[str | None, int, str], ServerConnection] = {}
        self._locks: dict[tuple[str | None, int, str], asyncio.Lock] = {}
        self._pool = Pool("auth_query", "auth_user", PoolSettings(), Counters(), lambda p: None)

    def forget(self, dbname: str) -> None:
        """Close the auth connection to ``dbname`` (it is about to be dropped)."""
        for key in [k for k in self._connections if k[2] == dbname]:
            self._connections.pop(key).close(f"database {dbname} is being dropped")

    async def lookup(self, entry: DatabaseEntry, database: str, user: str) -> str | None:
        cfg = self.pooler.config
        auth_user = entry.auth_user or cfg.get_str("auth_user")
        dbname = (
            cfg.get_str("auth_dbname")
            or entry.dbname
            or (database if entry.name == "*" else entry.name)
        )
        key = (entry.host, entry.port, dbname)
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                return await self._lookup(key, auth_user, user)
            except (ServerError, PgmuxError, OSError, ConnectionError) as exc:
                stale = self._connections.pop(key, None)
                if stale is not None:
                    stale.close("auth_query failed")
                log.warning("auth_query for %r failed: %s", user, exc)
                raise PgmuxError(
                    CONNECTION_FAILURE,
                    "could not look up the user's password (auth_query failed); "
                    "check auth_user and its password in auth_file",
                ) from None
            except asyncio.CancelledError:
                # The client left (or hit client_login_timeout) with the query in flight: its
                # reply would be read as the next user's secret. Never reuse that connection.
                interrupted = self._connections.pop(key, None)
                if interrupted is not None:
                    interrupted.close("auth_query interrupted")
                raise

    async def _lookup(
        self, key: tuple[str | None, int, str], auth_user: str, user: str
    ) -> str | None:
        sql = self.pooler.config.get_str("auth_query")
        server = self._connections.get(key)
        if server is not None and not server.closed:
            try:
                return await self._run(server, sql, user)
            except (ServerError, OSError, ConnectionError) as exc:
                if isinstance(exc, ServerError) and exc.severity != "FATAL":
                    raise
                # The kept connection died while idle (pg_terminate_backend, a server restart,
                # idle_session_timeout) and pgmux had not noticed yet: one try on a new one.
                log.info("auth_query connection lost (%s); reconnecting", exc)
                del self._connections[key]
                server.close("auth_query connection lost")
        return await self._run(await self._connection(key, auth_user), sql, user)

    async def _connection(
        self, key: tuple[str | None, int, str], auth_user: str
    ) -> ServerConnection:
        server = self._connections.get(key)
        if server is not None and not server.closed:
            return server
        password = self.pooler.userlist.get(auth_user)
        target = ServerTarget(
            host=key[0], port=key[1], dbname=key[2], user=auth_user, password=password
        )
        server = await open_server(self.pooler, self._pool, target)
        server.reader = MessageReader(self.pooler.max_packet_size)  # stays in login-style reads
        self._connections[key] = server
        return server

    async def _run(self, server: ServerConnection, sql: str, user: str) -> str | None:
        assert server.transport is not None and server.reader is not None
        server.transport.write(extended_query(sql, [user]))
        secret: str | None = None
        error: ServerError | None = None
        while True:
            kind, body = await server.reader.read_message()
            if kind == ord("D"):
                row = m.parse_data_row(body)
                secret = row[1] if len(row) > 1 else None
            elif kind == ord("E"):
                error = ServerError(m.parse_error_fields(body))
            elif kind == ord("Z"):
                break
        if error is not None:
            raise error
        return secret
