"""CancelRequests through pgmux: they stop the sender's running query, and nothing else.

A client only knows the cancel key pgmux gave it; pgmux maps that key to whichever server
connection the client holds right now and sends PostgreSQL a CancelRequest with that server's
own key. So a cancel must stop exactly the sender's query, quickly, while another client's query
on another server connection finishes normally; a wrong key, or a client that holds no server
(transaction mode, between transactions), must cancel nothing.
"""

from __future__ import annotations

import asyncio
import random
import socket
import struct
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psycopg
import pytest
from psycopg import errors

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

USER, PASSWORD = "scram_user", "scram_pw"
SLOW = "select 'slow' from pg_sleep(10)"
SHORT = "select 'done' from pg_sleep(1)"
CANCEL_REQUEST_CODE = 80877102


@pytest.fixture
def admin(pg: PostgresCluster) -> Iterator[psycopg.Connection]:
    """A superuser connection straight to PostgreSQL, to watch pg_stat_activity."""
    with psycopg.connect(pg.dsn("app"), autocommit=True) as conn:
        yield conn


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def connect(pgmux: PgmuxProcess) -> psycopg.Connection:
    return psycopg.connect(pgmux.dsn(USER, PASSWORD), autocommit=True, prepare_threshold=None)


def fetch(conn: psycopg.Connection, sql: str) -> tuple[object, ...] | None:
    return conn.execute(sql).fetchone()


def active_pids(admin: psycopg.Connection, sql: str) -> list[int]:
    rows = admin.execute(
        "select pid from pg_stat_activity where state = 'active' and query = %s", (sql,)
    ).fetchall()
    return [row[0] for row in rows]


def wait_active(admin: psycopg.Connection, sql: str, timeout: float = 5.0) -> int:
    """The backend pid running ``sql``, once PostgreSQL shows it running."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = active_pids(admin, sql)
        if pids:
            assert len(pids) == 1, pids
            return pids[0]
        time.sleep(0.01)
    raise AssertionError(f"{sql!r} never showed up as active in pg_stat_activity")


def expect_canceled(future: Future[Any], since: float) -> None:
    with pytest.raises(errors.QueryCanceled) as canceled:
        future.result(timeout=5)
    assert canceled.value.sqlstate == "57014"
    assert time.monotonic() - since < 2.0, "the cancel took too long to land"


def send_cancel_request(pgmux: PgmuxProcess, pid: int, key: int) -> None:
    with socket.create_connection((pgmux.host, pgmux.port), timeout=5) as sock:
        sock.sendall(struct.pack("!iiii", 16, CANCEL_REQUEST_CODE, pid, key))
        assert sock.recv(1) == b""  # pgmux closes without an answer, as PostgreSQL does


@pytest.mark.parametrize("api", ["cancel", "cancel_safe"])
@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_cancel_stops_only_the_senders_query(
    pgmux_factory: Callable[..., PgmuxProcess],
    admin: psycopg.Connection,
    threads: ThreadPoolExecutor,
    mode: str,
    api: str,
) -> None:
    pgmux = pgmux_factory(pool_mode=mode, default_pool_size=2)
    with connect(pgmux) as slow, connect(pgmux) as other:
        slow_future = threads.submit(fetch, slow, SLOW)
        other_future = threads.submit(fetch, other, SHORT)
        slow_pid = wait_active(admin, SLOW)
        other_pid = wait_active(admin, SHORT)
        assert slow_pid != other_pid
        started = time.monotonic()
        getattr(slow, api)()
        expect_canceled(slow_future, started)
        assert other_future.result(timeout=5) == ("done",)  # ran its full second, untouched
        # Both connections carry on; in transaction mode the canceled one's server came back.
        assert fetch(slow, "select 1") == (1,)
        assert fetch(other, "select 2") == (2,)


def test_wrong_key_cancels_nothing(
    pgmux_factory: Callable[..., PgmuxProcess],
    admin: psycopg.Connection,
    threads: ThreadPoolExecutor,
) -> None:
    pgmux = pgmux_factory(pool_mode="session", default_pool_size=2)
    with connect(pgmux) as conn:
        future = threads.submit(fetch, conn, SLOW)
        backend_pid = wait_active(admin, SLOW)
        assert conn.info.backend_pid == backend_pid  # session mode reports the real pid
        wrong_key = random.getrandbits(32) - 2**31
        send_cancel_request(pgmux, backend_pid, wrong_key)
        send_cancel_request(pgmux, backend_pid + 1, wrong_key)
        time.sleep(0.5)
        assert not future.done()
        assert active_pids(admin, SLOW) == [backend_pid]
        started = time.monotonic()
        conn.cancel_safe()
        expect_canceled(future, started)


def test_wrong_key_cancels_nothing_in_transaction_mode(
    pgmux_factory: Callable[..., PgmuxProcess],
    admin: psycopg.Connection,
    threads: ThreadPoolExecutor,
) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=2)
    with connect(pgmux) as conn:
        future = threads.submit(fetch, conn, SLOW)
        backend_pid = wait_active(admin, SLOW)
        for pid in (conn.info.backend_pid, backend_pid):  # pgmux's pid for us, the real one
            send_cancel_request(pgmux, pid, random.getrandbits(32) - 2**31)
        time.sleep(0.5)
        assert not future.done()
        started = time.monotonic()
        conn.cancel_safe()
        expect_canceled(future, started)


def test_cancel_from_client_between_transactions_hits_nobody(
    pgmux_factory: Callable[..., PgmuxProcess],
    admin: psycopg.Connection,
    threads: ThreadPoolExecutor,
) -> None:
    # One server connection: the idle client used it last, the busy one holds it now.
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=1)
    with connect(pgmux) as idle, connect(pgmux) as busy:
        idle_pid = fetch(idle, "select pg_backend_pid()")
        future = threads.submit(fetch, busy, SHORT)
        assert (wait_active(admin, SHORT),) == idle_pid
        idle.cancel_safe()
        assert future.result(timeout=5) == ("done",)
        assert fetch(idle, "select 1") == (1,)


def test_asyncpg_timeout_cancels_through_pgmux(
    pgmux_factory: Callable[..., PgmuxProcess],
) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=2)

    async def main() -> float:
        conn = await asyncpg.connect(host=pgmux.host, port=pgmux.port, user=USER,
                                     password=PASSWORD, database="app",
                                     statement_cache_size=0)  # fmt: skip
        try:
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(conn.fetchval(SLOW), 0.3)
            started = time.monotonic()
            assert await conn.fetchval("select 42") == 42  # waits for the cancel to land
            return time.monotonic() - started
        finally:
            await conn.close()

    assert asyncio.run(main()) < 2.0
