"""The end of a client's login: joining its pool, its parameters, and the welcome messages.

After authentication a client is attached to its pool; in session mode it gets its server
connection here, and startup parameters that differ from the server's defaults are applied on
a server (and cached per pool in transaction mode), so that a bad value fails the login with
PostgreSQL's own error and every value is reported in PostgreSQL's own spelling. Then
AuthenticationOk, the ParameterStatus messages, BackendKeyData and ReadyForQuery go out in one
write, and the client enters the forwarding phase.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from pgmux import __version__
from pgmux.admin.console import AdminSession
from pgmux.pool.pool import Pool
from pgmux.protocol import messages as m
from pgmux.protocol.errors import CONNECTION_FAILURE, PgmuxError, ServerError
from pgmux.proxy.client import ClientConnection
from pgmux.proxy.params import client_parameters
from pgmux.proxy.server import ServerConnection
from pgmux.proxy.statements import STATEMENT_INTERCEPT, ClientStatements

if TYPE_CHECKING:
    from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux.client")


async def welcome(pooler: Pooler, client: ClientConnection, pool: Pool) -> None:
    """AuthenticationOk, the server's parameters, BackendKeyData, ReadyForQuery.

    All four go out in one write, once everything that can still fail has been done.
    """
    now = time.monotonic()
    if pool.in_login_retry(now) and pool.last_login_error is not None:
        raise copy_error(pool.last_login_error)
    if not pool.server_params:
        await pooler.first_server(pool)
    join_pool(pooler, client, pool)
    # One read of the system's CSPRNG gives the cancel key (and the pid pgmux makes up).
    entropy = int.from_bytes(os.urandom(8), "big")
    pid = (entropy >> 33) or 1
    if client.pool_mode == "session":
        server = await login_server(pooler, client, pool)
        await _apply_parameters(pooler, client, server)
        pid = server.backend_pid or pid
    elif client.params != pool.server_params_for(client.params):
        await _check_parameters(pooler, client, pool)
    # The low byte of the secret names the worker that owns the client.
    key = (entropy & 0xFFFFFF00) | pooler.worker_index
    client.cancel_key = (pid, key)
    pooler.cancel_keys[client.cancel_key] = client
    client.send(
        m.AUTHENTICATION_OK
        + _status_block(pool, client.params)
        + m.backend_key_data(pid, key)
        + m.READY_FOR_QUERY_IDLE
    )
    _enter_forwarding(client)
    if pooler.log_connections:
        log.info(
            "client %d login: %s@%s from %s",
            client.id,
            client.user,
            client.database,
            format_addr(client.addr),
        )


def join_pool(pooler: Pooler, client: ClientConnection, pool: Pool) -> None:
    """Attach a client that has logged in to ``pool``: its pool mode, its statement
    bookkeeping and the parameters it wants (the pool's, overridden by its startup packet)."""
    client.pool = pool
    client.stats = pool.stats
    client.pool_mode = pool.settings.pool_mode
    client.releases = client.pool_mode != "session"
    client.statement_mode = client.pool_mode == "statement"
    client.session_state = pool.settings.session_state
    if client.releases and pooler.max_prepared_statements > 0:
        client.statements = ClientStatements(pooler.max_client_prepared_statements)
        client.scanner.intercept = STATEMENT_INTERCEPT
    client.params = client_parameters(pool.server_params, client.startup, pooler.tracked)
    pool.add_client(client)
    pool.stats.client_login_count += 1


def _status_block(pool: Pool, params: dict[str, str]) -> bytes:
    """ParameterStatus messages for a client: only what PostgreSQL itself reports, in its
    spelling (UTF8 for utf8, ...). Most clients want the same values: cached per pool."""
    key = tuple(params.items())
    block = pool.status_blocks.get(key)
    if block is None:
        reported = dict(pool.server_params)
        reported.update((k, v) for k, v in params.items() if k in reported)
        block = m.parameter_status_block(reported)
        if len(pool.status_blocks) < 256:
            pool.status_blocks[key] = block
    return block


async def login_server(pooler: Pooler, client: ClientConnection, pool: Pool) -> ServerConnection:
    """A server for a client still logging in (waiting in line like any other client)."""
    server = pool.acquire(client, time.monotonic())
    if server is None:
        client.assigned = pooler.loop.create_future()
        await client.assigned
        server = client.server
        assert server is not None
    else:
        client.link(server)
    return server


async def _apply_parameters(
    pooler: Pooler, client: ClientConnection, server: ServerConnection
) -> None:
    """SET the client's parameters on ``server`` and wait: a bad value fails the login
    with PostgreSQL's own error, and the replies give PostgreSQL's spelling of each value.
    """
    done: asyncio.Future[ServerError | None] = pooler.loop.create_future()
    if not server.sync_parameters(client, done.set_result):
        return
    error = await done
    if error is not None:
        # The failed SETs were rolled back, but pgmux's record of them was not: start over.
        client.server = None
        server.client = None
        server.pool.remove_server(server)
        server.close("parameters rejected at login")
        raise error


async def _check_parameters(pooler: Pooler, client: ClientConnection, pool: Pool) -> None:
    """Transaction mode: validate startup parameters once per distinct set, on any server."""
    key = tuple(sorted(client.startup.items()))
    known = pool.parameter_cache.get(key)
    if known is not None:
        client.params = dict(known)
        return
    server = await login_server(pooler, client, pool)
    await _apply_parameters(pooler, client, server)
    client.server = None
    server.client = None
    pool.server_ready(server, time.monotonic())
    if len(pool.parameter_cache) < 1000:
        pool.parameter_cache[key] = dict(client.params)


def _enter_forwarding(client: ClientConnection) -> None:
    reader = client.reader
    assert reader is not None
    rest = reader.take_rest()
    client.reader = None
    server = client.server  # session mode: linked at login, and maybe not keeping up already
    if server is None or not server.writing_paused:
        client.resume_reading()  # if the login phase paused it; forwarding pauses again if need be
    if rest:  # the client pipelined its first query behind the login
        try:
            client.on_data(memoryview(bytearray(rest)), len(rest))
        except PgmuxError as error:
            client.fail(error)


async def admin_welcome(pooler: Pooler, client: ClientConnection) -> None:
    client.send(m.AUTHENTICATION_OK)
    client.is_admin = True
    client.admin = AdminSession(pooler, client)
    params = {
        "server_version": "15.0 (pgmux " + __version__ + ")",
        "client_encoding": "UTF8",
        "server_encoding": "UTF8",
        "DateStyle": "ISO, MDY",
        "standard_conforming_strings": "on",
        "TimeZone": "UTC",
        "integer_datetimes": "on",
        "application_name": client.application_name,
    }
    client.send(m.parameter_status_block(params) + m.backend_key_data(0, 0) + m.ready_for_query())
    _enter_forwarding(client)


def format_addr(addr: tuple[str, int]) -> str:
    return f"{addr[0]}:{addr[1]}" if addr[1] else addr[0]


def client_error(exc: BaseException) -> PgmuxError:
    if isinstance(exc, PgmuxError):
        return exc
    if isinstance(exc, ServerError):
        return PgmuxError(
            exc.sqlstate, exc.message, detail=exc.fields.get("D"), hint=exc.fields.get("H")
        )
    return PgmuxError(CONNECTION_FAILURE, f"could not connect to server: {exc}")


def copy_error(error: Exception) -> PgmuxError:
    if isinstance(error, PgmuxError):
        return PgmuxError(error.sqlstate, error.message, "FATAL", error.detail, error.hint)
    return client_error(error)
