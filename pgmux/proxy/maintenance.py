"""The janitor: timeouts, lifetimes and min_pool_size, checked a few times a second.

Per-connection timers would cost a timer handle per client and a reschedule per query; one
periodic sweep over the pools costs nothing on the hot path and is what PgBouncer does. The
sweep period bounds how late a timeout fires (``TICK`` seconds at most).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from pgmux.pool.pool import Pool
from pgmux.pool.stats import PoolStats
from pgmux.protocol import messages as m
from pgmux.protocol.errors import (
    CONNECTION_FAILURE,
    IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
    IDLE_SESSION_TIMEOUT,
    QUERY_CANCELED,
    PgmuxError,
)

if TYPE_CHECKING:
    from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux")

TICK = 0.25


class StatsWindow:
    """Snapshots of per-database totals ``stats_period`` apart, for the avg_* columns."""

    def __init__(self) -> None:
        self._previous: dict[str, tuple[PoolStats, float]] = {}
        self._current: dict[str, PoolStats] = {}
        self._taken = time.monotonic()

    def rotate(self, pooler: Pooler, now: float) -> None:
        totals: dict[str, PoolStats] = {}
        for pool in pooler.pools.values():
            totals.setdefault(pool.database, PoolStats()).add(pool.stats)
        self._previous = {db: (stats, now - self._taken) for db, stats in self._current.items()}
        self._current = totals
        self._taken = now

    def previous(self, db: str) -> tuple[PoolStats | None, float]:
        entry = self._previous.get(db)
        return (entry[0], entry[1]) if entry else (None, 0.0)

    def current(self, db: str) -> PoolStats:
        return self._current.get(db, PoolStats())


async def janitor(pooler: Pooler) -> None:
    last_rotate = time.monotonic()
    while True:
        await asyncio.sleep(TICK)
        now = time.monotonic()
        try:
            sweep(pooler, now)
        except Exception:  # the janitor must survive a bug in one sweep
            log.exception("maintenance sweep failed")
        period = pooler.config.get_float("stats_period") or 60.0
        if now - last_rotate >= period:
            pooler.stats_window.rotate(pooler, now)
            last_rotate = now


def sweep(pooler: Pooler, now: float) -> None:
    _slow_logins(pooler, now)
    for pool in list(pooler.pools.values()):
        _waiting_clients(pooler, pool, now)
        _active_clients(pooler, pool, now)
        _idle_servers(pool, now)
        pool.grow(now)


def _slow_logins(pooler: Pooler, now: float) -> None:
    """client_login_timeout: a client still logging in that long is told so and closed."""
    timeout = pooler.config.get_float("client_login_timeout")
    if timeout <= 0:
        return
    for client in [c for c in pooler.logging_in if now - c.connect_time >= timeout]:
        pooler.logging_in.pop(client, None)
        client.fail(PgmuxError(CONNECTION_FAILURE, "client_login_timeout: login took too long"))


def _waiting_clients(pooler: Pooler, pool: Pool, now: float) -> None:
    timeout = pool.settings.query_wait_timeout
    if timeout <= 0 or pool.paused:
        return
    for client in list(pool.cl_waiting):
        if now - client.wait_start >= timeout:
            client.fail(
                PgmuxError(
                    QUERY_CANCELED,
                    f"query_wait_timeout: no server connection became free within {timeout:g} s",
                    hint="the pool is too small for the load (default_pool_size / pool_size), "
                    "or transactions hold their connections too long",
                )
            )


def _active_clients(pooler: Pooler, pool: Pool, now: float) -> None:
    settings = pool.settings
    for client in list(pool.cl_active):
        server = client.server
        if server is None:
            idle = settings.client_idle_timeout
            if idle > 0 and now - client.request_time >= idle:
                client.fail(
                    PgmuxError(
                        IDLE_SESSION_TIMEOUT, "client_idle_timeout: closing idle client connection"
                    )
                )
            continue
        busy = not client.scanner.idle
        if (
            busy
            and settings.query_timeout > 0
            and now - client.request_time >= settings.query_timeout
        ):
            # Closing the server connection alone would leave the query running (and holding
            # its locks) until it next writes: cancel it first, as a client would.
            pooler.cancel(*client.cancel_key)
            client.fail(
                PgmuxError(
                    QUERY_CANCELED,
                    f"query_timeout: query ran longer than {settings.query_timeout:g} s",
                )
            )
        elif (
            not busy
            and server.tx_status != m.TX_IDLE
            and settings.idle_transaction_timeout > 0
            and now - client.request_time >= settings.idle_transaction_timeout
        ):
            client.fail(
                PgmuxError(
                    IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                    "idle_transaction_timeout: closing connection that was idle "
                    "in a transaction for too long",
                )
            )
        elif (
            not busy
            and client.pool_mode == "session"
            and settings.client_idle_timeout > 0
            and now - client.request_time >= settings.client_idle_timeout
        ):
            client.fail(
                PgmuxError(
                    IDLE_SESSION_TIMEOUT, "client_idle_timeout: closing idle client connection"
                )
            )


def _idle_servers(pool: Pool, now: float) -> None:
    settings = pool.settings
    # Lifetimes get up to 10% jitter (derived from the id, so runs are repeatable) so that
    # connections opened together do not all close, and reopen, in the same sweep.
    for server in list(pool.sv_idle):
        idle_for = now - server.idle_since
        lifetime = settings.server_lifetime
        jitter = 1.0 - 0.1 * (server.id % 10) / 10
        if (
            pool.server_count <= settings.min_pool_size
            and not server.close_needed
            and (lifetime <= 0 or now - server.connect_time < lifetime * jitter)
        ):
            continue
        if (
            (settings.server_idle_timeout > 0 and idle_for >= settings.server_idle_timeout)
            or (lifetime > 0 and now - server.connect_time >= lifetime * jitter)
            or server.close_needed
            or server.generation != pool.generation
        ):
            pool.remove_server(server)
            server.close("server_idle_timeout/server_lifetime")
