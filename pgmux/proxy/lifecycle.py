"""PAUSE, RESUME, RECONNECT, KILL, RELOAD and shutdown: one machinery for all of them.

Each is a change of pool flags plus a wait for servers to come back at their next
ReadyForQuery; graceful shutdown is "stop listening, pause everything, wait up to
``shutdown_timeout``, then close whatever is left". Nothing here ever interrupts a transaction
except KILL and the forced end of shutdown.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

from pgmux.config import diff_for_reload, load_config
from pgmux.pool.pool import Pool

if TYPE_CHECKING:
    from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux")


class Lifecycle:
    def __init__(self, pooler: Pooler) -> None:
        self.pooler = pooler
        self.stopped = asyncio.Event()
        self._shutdown_task: asyncio.Task[None] | None = None

    def _pools(self, db: str | None) -> list[Pool]:
        return [p for p in self.pooler.pools.values() if db is None or p.database == db]

    async def pause(self, db: str | None) -> None:
        """New transactions wait; return once every server connection is closed."""
        pools = self._pools(db)
        for pool in pools:
            pool.paused = True
            _close_idle(pool)
        while any(p.sv_active or p.sv_tested or p.sv_login for p in pools):
            await asyncio.sleep(0.05)
            for pool in pools:
                _close_idle(pool)

    def resume(self, db: str | None) -> None:
        now = time.monotonic()
        for pool in self._pools(db):
            pool.paused = False
            while pool.cl_waiting and pool.sv_idle:
                pool.server_ready(pool.sv_idle.popitem()[0], now)
            pool.grow(now)

    def reconnect(self, db: str | None) -> None:
        """Close idle servers now and busy ones when they are released."""
        for pool in self._pools(db):
            self.reconnect_pool(pool)

    def reconnect_pool(self, pool: Pool) -> None:
        pool.generation += 1
        _close_idle(pool)
        for server in pool.sv_active:
            server.close_needed = True
        pool.grow(time.monotonic())

    def kill(self, db: str | None) -> None:
        pooler = self.pooler
        for pool in self._pools(db):
            for client in list(pool.cl_active) + list(pool.cl_waiting):
                client.fail(pooler.kill_error())
            for server in list(pool.sv_idle) + list(pool.sv_used) + list(pool.sv_active):
                pool.remove_server(server)
                server.close("KILL")

    def reload(self) -> None:
        pooler = self.pooler
        path = pooler.config.path
        if path is None:
            raise ValueError("pgmux was not started from a config file")
        new = load_config(path)
        for warning in new.warnings:
            log.warning("%s", warning)
        changed, restart_needed = diff_for_reload(pooler.config, new)
        for key in restart_needed:
            log.warning("config key %r changed; it takes effect only after a restart", key)
        pooler.apply_config(new)
        log.info("config reloaded (%d changed keys)", len(changed) + len(restart_needed))

    def request_shutdown(self, *, graceful: bool) -> None:
        if self._shutdown_task is None:
            self._shutdown_task = self.pooler.loop.create_task(self.shutdown(graceful))

    async def shutdown(self, graceful: bool) -> None:
        pooler = self.pooler
        pooler.shutting_down = True
        pooler.stop_listening()
        log.info("shutting down (%s)", "waiting for transactions" if graceful else "now")
        if graceful:
            timeout = pooler.config.get_float("shutdown_timeout")
            try:
                await asyncio.wait_for(self._drain(), timeout or None)
            except TimeoutError:
                log.warning("shutdown_timeout reached; closing remaining connections")
        for client in list(pooler.clients):
            client.fail(pooler.shutdown_error())
        for server in pooler.all_servers():
            server.close("shutdown")
        await asyncio.sleep(0.05)  # let the transports flush their goodbyes
        self.stopped.set()

    async def _drain(self) -> None:
        """Close clients as soon as they are between transactions; wait for the rest."""
        pooler = self.pooler
        while True:
            for client in list(pooler.clients):
                if client.reader is not None or (client.server is None and not client.pending):
                    client.fail(pooler.shutdown_error())
                elif client.server is not None and client.scanner.idle \
                        and client.server.tx_status == ord("I"):
                    client.fail(pooler.shutdown_error())
            if not pooler.clients:
                return
            await asyncio.sleep(0.05)


def _close_idle(pool: Pool) -> None:
    for members in (pool.sv_idle, pool.sv_used):
        for server in list(members):
            pool.remove_server(server)
            server.close("pause/reconnect")
