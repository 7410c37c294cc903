"""Timeouts, lifetimes, retries and the reserve pool, each with values of a second or two.

Every test starts its own pgmux with the one setting under test turned down, and checks both
sides: what the client sees (a clear error, with the SQLSTATE PostgreSQL would use, soon after the
limit and not before) and, where it matters, what PostgreSQL sees in ``pg_stat_activity``.
pgmux's janitor sweeps every 0.25 s, so a timeout may fire that much late; the bounds below leave
room for that and for a busy test machine.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable, Iterator

import asyncpg
import psycopg
import pytest

from pgmux.testing import PostgresCluster
from pgmux.testing.cluster import free_port
from pgmux.testing.pooler import PgmuxProcess

Factory = Callable[..., PgmuxProcess]


def connect(pgmux: PgmuxProcess, dbname: str = "app", **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(
        pgmux.dsn("scram_user", "scram_pw", dbname), connect_timeout=10, autocommit=True, **kwargs
    )


def backend_pid(conn: psycopg.Connection) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def backend_state(pg: PostgresCluster, pid: int) -> str:
    """The backend's pg_stat_activity state, "" once it is gone."""
    return pg.psql(f"SELECT state FROM pg_stat_activity WHERE pid = {pid}").strip()


def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``predicate`` holds; return how long that took."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


def login_error(pgmux: PgmuxProcess, dbname: str) -> tuple[asyncpg.PostgresError, float]:
    """The error an asyncpg login to ``dbname`` fails with, and how long it took."""

    async def attempt() -> None:
        conn = await asyncpg.connect(
            host=pgmux.host, port=pgmux.port, user="scram_user", password="scram_pw",
            database=dbname, ssl=False, timeout=30,
        )  # fmt: skip
        await conn.close()

    start = time.monotonic()
    try:
        asyncio.run(attempt())
    except asyncpg.PostgresError as exc:
        return exc, time.monotonic() - start
    pytest.fail(f"login to {dbname} succeeded but should not have")


def databases(pg: PostgresCluster, **extra: str) -> dict[str, str]:
    return {"app": f"host={pg.host} port={pg.port} dbname=app", **extra}


# -- clients ------------------------------------------------------------------------------------


def test_query_wait_timeout(pgmux_factory: Factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=1, query_wait_timeout=1)
    with connect(pgmux) as holder, connect(pgmux) as waiter:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")  # the only server connection is held by this transaction
        start = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as info:
            waiter.execute("SELECT 1")
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 3.0
        assert info.value.sqlstate == "57014"
        assert "query_wait_timeout" in str(info.value)
        assert waiter.closed
        holder.execute("COMMIT")
        assert holder.execute("SELECT 2").fetchone() == (2,)


def test_query_wait_timeout_at_login_in_session_mode(pgmux_factory: Factory) -> None:
    # In session mode a client needs its server to log in: the wait, and its limit, come first.
    pgmux = pgmux_factory(pool_mode="session", default_pool_size=1, query_wait_timeout=1)
    with connect(pgmux) as holder:
        error, elapsed = login_error(pgmux, "app")
        assert 0.9 <= elapsed < 3.0
        assert error.sqlstate == "57014"
        assert "query_wait_timeout" in str(error)
        assert holder.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_query_timeout(pg: PostgresCluster, pgmux_factory: Factory, mode: str) -> None:
    pgmux = pgmux_factory(pool_mode=mode, query_timeout=1)
    with connect(pgmux) as conn:
        assert conn.execute("SELECT pg_sleep(0.2)").fetchone() == ("",)  # shorter: fine
        pid = backend_pid(conn)  # the same server connection runs the next query
        start = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as info:
            conn.execute("SELECT pg_sleep(10)")
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 3.0
        assert info.value.sqlstate == "57014"
        assert "query_timeout" in str(info.value)
        assert conn.closed
    # The query is cancelled, not left running on the server (holding its locks) for 10 s.
    wait_for(lambda: backend_state(pg, pid) != "active", 5, "the query to be cancelled")
    with connect(pgmux) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_idle_transaction_timeout(pg: PostgresCluster, pgmux_factory: Factory, mode: str) -> None:
    pgmux = pgmux_factory(pool_mode=mode, idle_transaction_timeout=1)
    with connect(pgmux) as conn:
        conn.execute("BEGIN")
        pid = backend_pid(conn)
        # Closed from pgmux's side: the transaction does not stay open on the server either.
        took = wait_for(
            lambda: backend_state(pg, pid) != "idle in transaction",
            4,
            "the idle transaction to end",
        )
        assert took >= 0.7
        with pytest.raises(psycopg.Error) as info:
            conn.execute("SELECT 1")
        assert conn.closed
    assert info.value.sqlstate == "25P03"
    assert "idle_transaction_timeout" in str(info.value)


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_client_idle_timeout(pgmux_factory: Factory, mode: str) -> None:
    pgmux = pgmux_factory(pool_mode=mode, client_idle_timeout=1)
    with connect(pgmux) as busy, connect(pgmux) as idle:
        idle.execute("SELECT 1")
        for _ in range(6):  # 1.5 s of activity every 0.25 s: never idle for 1 s
            busy.execute("SELECT 1")
            time.sleep(0.25)
        with pytest.raises(psycopg.OperationalError) as info:
            idle.execute("SELECT 1")
        assert idle.closed
        assert info.value.sqlstate == "57P05"
        assert "client_idle_timeout" in str(info.value)
        assert busy.execute("SELECT 1").fetchone() == (1,)


# -- server connections -------------------------------------------------------------------------


def test_server_idle_timeout(pg: PostgresCluster, pgmux_factory: Factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", server_idle_timeout=1)
    with connect(pgmux) as conn:
        pid = backend_pid(conn)
        assert backend_state(pg, pid) == "idle"  # given back to the pool, still open
        took = wait_for(lambda: backend_state(pg, pid) == "", 4, "the idle server to close")
        assert took >= 0.5
        assert backend_pid(conn) != pid  # the client carries on with a new connection


def test_server_lifetime(pgmux_factory: Factory) -> None:
    pgmux = pgmux_factory(pool_mode="session", server_lifetime=1.5)
    with connect(pgmux) as conn:
        first = backend_pid(conn)
    with connect(pgmux) as conn:
        assert backend_pid(conn) == first  # reused while young
    time.sleep(1.7)
    with connect(pgmux) as conn:
        assert backend_pid(conn) != first


def test_server_check_query_drops_a_dead_connection(
    pg: PostgresCluster, pgmux_factory: Factory
) -> None:
    # The check has a side effect PostgreSQL can count: a sequence advances once per check.
    pg.psql(
        "CREATE SEQUENCE IF NOT EXISTS pgmux_checks; GRANT USAGE ON pgmux_checks TO scram_user;",
        dbname="app",
    )
    pgmux = pgmux_factory(
        pool_mode="transaction", server_check_delay=1,
        server_check_query="SELECT nextval('pgmux_checks')",
    )  # fmt: skip

    def checks() -> int:
        sql = "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM pgmux_checks"
        return int(pg.psql(sql, dbname="app"))

    with connect(pgmux) as conn:
        pid = backend_pid(conn)
        before = checks()
        backend_pid(conn)  # reused within server_check_delay: no check
        assert checks() == before
        time.sleep(1.2)
        assert backend_pid(conn) == pid  # idle longer than the delay: checked, then reused
        assert checks() == before + 1

        time.sleep(1.2)
        pg.psql(f"SELECT pg_terminate_backend({pid})")
        # Transparent for the client: the dead connection is dropped, a new one serves it.
        assert conn.execute("SELECT 42").fetchone() == (42,)
        assert backend_pid(conn) != pid


def test_dead_server_fails_fast(pgmux_factory: Factory, pg: PostgresCluster) -> None:
    closed_port = free_port()
    pgmux = pgmux_factory(
        databases=databases(pg, dead=f"host=127.0.0.1 port={closed_port} dbname=app")
    )
    error, elapsed = login_error(pgmux, "dead")
    assert elapsed < 2.0
    assert error.sqlstate == "08006"
    assert "could not connect to server" in str(error)
    with connect(pgmux) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections (the kernel does) but never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def test_server_connect_timeout(
    pgmux_factory: Factory, pg: PostgresCluster, silent_server: int
) -> None:
    pgmux = pgmux_factory(
        databases=databases(pg, silent=f"host=127.0.0.1 port={silent_server} dbname=app"),
        server_connect_timeout=1,
    )
    error, elapsed = login_error(pgmux, "silent")
    assert 0.9 <= elapsed < 3.0
    assert error.sqlstate == "08006"
    assert "server_connect_timeout" in str(error)


def test_server_login_retry(pgmux_factory: Factory, pg: PostgresCluster) -> None:
    target = f"host={pg.host} port={pg.port} dbname=app"
    pgmux = pgmux_factory(
        databases=databases(pg, bad=f"{target} user=scram_user password=wrong"),
        server_login_retry=1.5,
    )

    def attempts() -> int:
        return pgmux.log().count("server login failed for bad/")

    first, _ = login_error(pgmux, "bad")
    assert first.sqlstate == "28P01"
    assert attempts() == 1
    # Within the retry window: the same error at once, without asking PostgreSQL again.
    second, elapsed = login_error(pgmux, "bad")
    assert (second.sqlstate, str(second)) == (first.sqlstate, str(first))
    assert elapsed < 1.0
    assert attempts() == 1
    time.sleep(1.6)
    third, _ = login_error(pgmux, "bad")
    assert third.sqlstate == "28P01"
    assert attempts() == 2

    # The operator fixes the password and reloads: once the window is over, logins work.
    pgmux.databases["bad"] = f"{target} user=scram_user password=scram_pw"
    pgmux.reload()
    wait_for(lambda: "config reloaded" in pgmux.log(), 5, "the reload")
    time.sleep(1.6)
    with connect(pgmux, "bad") as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("scram_user",)


def test_reserve_pool(pgmux_factory: Factory) -> None:
    pgmux = pgmux_factory(
        pool_mode="transaction", default_pool_size=1, reserve_pool_size=1,
        reserve_pool_timeout=1,
    )  # fmt: skip
    with connect(pgmux) as holder, connect(pgmux) as second:
        holder.execute("BEGIN")
        held = backend_pid(holder)
        start = time.monotonic()
        served = backend_pid(second)  # waits for the reserve, then gets a second connection
        elapsed = time.monotonic() - start
        assert 0.9 <= elapsed < 3.0
        assert served != held
        holder.execute("COMMIT")
