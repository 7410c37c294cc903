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

from pgmux.auth.userlist import load_userlist
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
        # PAUSE covers pools created later too (a user's first login after PAUSE).
        self.paused_all = False
        self.paused_dbs: set[str] = set()

    def is_paused(self, db: str) -> bool:
        return self.paused_all or db in self.paused_dbs

    def _pools(self, db: str | None) -> list[Pool]:
        return [p for p in self.pooler.pools.values() if db is None or p.database == db]

    async def pause(self, db: str | None) -> None:
        """New transactions wait; return once every server connection is closed."""
        if db is None:
            self.paused_all = True
        else:
            self.paused_dbs.add(db)
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
        if db is None:
            self.paused_all = False
            self.paused_dbs.clear()
        else:
            self.paused_dbs.discard(db)
        for pool in self._pools(db):
            if self.is_paused(pool.database):
                continue
            pool.paused = False
            self.pooler.launch_first_server(pool)
            while pool.cl_waiting and pool.sv_idle:
                pool.server_ready(next(reversed(pool.sv_idle)), now)
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
        """Re-read the config file (``conffile``) and the auth_file; on any error keep both.

        Settings that need a restart keep their running values, so that SHOW CONFIG shows what
        is in force.
        """
        pooler = self.pooler
        old = pooler.config
        path = old.get_str("conffile") or old.path
        if not path:
            raise ValueError("pgmux was not started from a config file")
        new = load_config(path)
        auth_file = new.get_str("auth_file")
        if auth_file:
            load_userlist(auth_file)  # fail here, before apply_config changes anything
        for warning in new.warnings:
            log.warning("%s", warning)
        changed, restart_needed = diff_for_reload(old, new)
        for key in restart_needed:
            log.warning("config key %r changed; it takes effect only after a restart", key)
            new.settings[key] = old.settings[key]
        pooler.apply_config(new)
        log.info("config reloaded (%d changed keys)", len(changed))

    def request_shutdown(self, *, graceful: bool) -> None:
        if self._shutdown_task is None:
            self._shutdown_task = self.pooler.loop.create_task(self.shutdown(graceful))

    async def shutdown(self, graceful: bool) -> None:
        pooler = self.pooler
        pooler.shutting_down = True
        pooler.stop_listening()
        log.info("shutting down (%s)", "waiting for transactions" if graceful else "now")
        if graceful:
            for pool in pooler.pools.values():
                pool.paused = True  # a client between transactions starts no new one
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
        """Close clients as soon as they are between transactions; wait for the rest.

        A client without a server is between transactions, or waiting for a server it will
        not get now that the pools are paused: its query has not started, so it goes too.
        """
        pooler = self.pooler
        while True:
            for client in list(pooler.clients):
                server = client.server
                if server is None or (client.scanner.idle and server.tx_status == ord("I")):
                    client.fail(pooler.shutdown_error())
            if not pooler.clients:
                return
            await asyncio.sleep(0.05)


def _close_idle(pool: Pool) -> None:
    for members in (pool.sv_idle, pool.sv_used):
        for server in list(members):
            pool.remove_server(server)
            server.close("pause/reconnect")
