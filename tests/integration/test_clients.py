"""Real client libraries through pgmux in each pool mode, against a real PostgreSQL.

Each library speaks the protocol its own way: psycopg (sync and async) uses the extended
protocol, named prepared statements after ``prepare_threshold`` runs and pipeline mode; asyncpg
prepares every query, copies in binary and batches Bind/Execute for ``executemany``; psql
sends simple queries and streams COPY data from its script. Every one of them must get the same
answers through pgmux as from PostgreSQL itself: results, parameters, rollbacks, COPY in both
directions and notices, in session, transaction and statement mode (transaction blocks and
pipelines only where the mode allows them).

The last test is the point of pooling: 200 concurrent clients on 10 server connections, each
checking that its transactions saw only its own values, while ``pg_stat_activity`` is sampled
on PostgreSQL to prove that no more than 10 server connections were ever open.

Named prepared statements in transaction and statement mode are a later issue, so there
psycopg runs with ``prepare_threshold=None`` and asyncpg with ``statement_cache_size=0``.
"""

from __future__ import annotations

import asyncio
import datetime
import io
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal

import asyncpg  # type: ignore[import-untyped]
import psycopg
import pytest
from psycopg import errors, pq
from psycopg.pq.abc import PGconn

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

PgmuxFor = Callable[[str], PgmuxProcess]
MODES = ("session", "transaction", "statement")
TX_MODES = ("session", "transaction")  # statement mode refuses transaction blocks
USER, PASSWORD = "scram_user", "scram_pw"
NOTICE_SQL = "DO $$ BEGIN RAISE NOTICE 'hello %', 41 + 1; RAISE NOTICE 'bye'; END $$"


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pgmux_for(pg: PostgresCluster, pg_passwords: dict[str, str | None]) -> Iterator[PgmuxFor]:
    """One pgmux per pool mode, started on first use and shared by the module's tests."""
    started: dict[str, PgmuxProcess] = {}
    target = f"host={pg.host} port={pg.port}"
    userlist = {user: pw for user, pw in pg_passwords.items() if pw is not None}

    def get(mode: str) -> PgmuxProcess:
        if mode not in started:
            settings = {"auth_type": "scram-sha-256", "pool_mode": mode, "default_pool_size": 4}
            databases = {"app": f"{target} dbname=app"}
            started[mode] = PgmuxProcess(databases, settings, userlist=userlist).start()
        return started[mode]

    yield get
    for process in started.values():
        process.stop()


@pytest.fixture
def table(pg: PostgresCluster) -> Iterator[str]:
    """A fresh table, created and dropped directly on PostgreSQL (not through pgmux)."""
    name = f"clients_{uuid.uuid4().hex[:12]}"
    direct = pg.dsn("app", USER, PASSWORD)
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute(f"create table {name} (id int primary key, name text, payload bytea)")
    yield name
    with psycopg.connect(direct, autocommit=True) as conn:
        conn.execute(f"drop table if exists {name}")


def prepare_threshold(mode: str) -> int | None:
    # Session mode keeps psycopg's default, so repeated queries become named prepared statements.
    return 5 if mode == "session" else None


def statement_cache_size(mode: str) -> int:
    return 100 if mode == "session" else 0


def connect(pgmux: PgmuxProcess, mode: str, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(
        pgmux.dsn(USER, PASSWORD), autocommit=autocommit, prepare_threshold=prepare_threshold(mode)
    )


async def aconnect(
    pgmux: PgmuxProcess, mode: str, autocommit: bool = True
) -> psycopg.AsyncConnection:
    return await psycopg.AsyncConnection.connect(
        pgmux.dsn(USER, PASSWORD), autocommit=autocommit, prepare_threshold=prepare_threshold(mode)
    )


async def asyncpg_connect(pgmux: PgmuxProcess, mode: str) -> asyncpg.Connection:
    return await asyncpg.connect(
        host=pgmux.host, port=pgmux.port, user=USER, password=PASSWORD, database="app",
        statement_cache_size=statement_cache_size(mode),
    )  # fmt: skip


def rows_of(n: int) -> list[tuple[int, str, bytes]]:
    # Some payloads span several network reads, so COPY framing is exercised across chunks.
    return [(i, f"name {i}\ttab", bytes([i % 256]) * (i * 997 % 70_000)) for i in range(n)]


# -- psycopg (sync) ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_queries_and_parameters(pgmux_for: PgmuxFor, mode: str) -> None:
    with connect(pgmux_for(mode), mode) as conn:
        assert conn.execute("select 41 + 1").fetchone() == (42,)
        # More runs than prepare_threshold: session mode switches to a named statement.
        for i in range(8):
            assert conn.execute("select %s::int * 2, %s::text", (i, f"v{i}")).fetchone() == (
                i * 2, f"v{i}",
            )  # fmt: skip
        values = (None, "x" * 100_000, b"\x00\xff", Decimal("1.50"), datetime.date(2024, 2, 29))
        row = conn.execute("select %s, %s, %s, %s, %s", values).fetchone()
        assert row == values
        binary = conn.cursor(binary=True)
        assert binary.execute("select %b::int8[]", ([1, 2, 3],)).fetchone() == ([1, 2, 3],)
        cur = conn.execute("select g from generate_series(1, 5000) g")
        assert [r[0] for r in cur] == list(range(1, 5001))
        assert conn.execute("select current_user, current_database()").fetchone() == (
            USER, "app",
        )  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_error_leaves_connection_usable(pgmux_for: PgmuxFor, mode: str) -> None:
    with connect(pgmux_for(mode), mode) as conn:
        with pytest.raises(errors.DivisionByZero):
            conn.execute("select 1 / %s::int", (0,))
        with pytest.raises(errors.UndefinedTable):
            conn.execute("select * from no_such_table")
        assert conn.execute("select %s::int", (7,)).fetchone() == (7,)


@pytest.mark.parametrize("mode", TX_MODES)
def test_psycopg_transaction_rollback(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    with connect(pgmux_for(mode), mode, autocommit=False) as conn:
        conn.execute(f"insert into {table} (id, name) values (1, 'rolled back')")
        assert conn.execute(f"select count(*) from {table}").fetchone() == (1,)
        conn.rollback()
        conn.execute(f"insert into {table} (id, name) values (2, 'kept')")
        with pytest.raises(errors.UniqueViolation), conn.transaction():
            conn.execute(f"insert into {table} (id, name) values (3, 'savepoint')")
            conn.execute(f"insert into {table} (id, name) values (2, 'duplicate')")
        conn.commit()
        with conn.transaction():
            conn.execute(f"insert into {table} (id, name) values (4, 'nested')")
            with pytest.raises(errors.DivisionByZero), conn.transaction():
                conn.execute(f"update {table} set name = 'changed' where id = 4")
                conn.execute("select 1 / 0")
    with connect(pgmux_for(mode), mode) as other:
        rows = other.execute(f"select id, name from {table} order by id").fetchall()
    assert rows == [(2, "kept"), (4, "nested")]


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_copy(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    rows = rows_of(300)
    with connect(pgmux_for(mode), mode) as conn:
        cur = conn.cursor()
        with cur.copy(f"copy {table} (id, name, payload) from stdin") as copy:
            for row in rows:
                copy.write_row(row)
        assert cur.rowcount == len(rows)
        copy_out = f"copy (select id, name, payload from {table} order by id) to stdout"
        with cur.copy(copy_out) as copy:
            copy.set_types(["int4", "text", "bytea"])
            assert list(copy.rows()) == rows
        # Binary format, and a COPY the client aborts: the server answers with an error.
        with cur.copy(f"copy (select id from {table}) to stdout (format binary)") as copy:
            copy.set_types(["int4"])
            assert sorted(r[0] for r in copy.rows()) == [r[0] for r in rows]
        with pytest.raises(ValueError), cur.copy(f"copy {table} (id) from stdin") as copy:
            copy.write_row((10_000,))
            raise ValueError("client gives up")  # psycopg sends CopyFail
        assert conn.execute(f"select count(*), max(id) from {table}").fetchone() == (300, 299)


def _libpq_result(conn: PGconn, status: pq.ExecStatus) -> None:
    result = conn.get_result()
    assert result is not None and result.status == status, conn.error_message


@pytest.mark.parametrize("tracked", [False, True], ids=["untracked", "tracked"])
@pytest.mark.parametrize("mode", ["transaction", "statement"])
def test_libpq_copy_over_the_extended_protocol_gives_the_server_back(
    pgmux_factory: Callable[..., PgmuxProcess], table: str, mode: str, tracked: bool
) -> None:
    # libpq's PQsendQueryParams of a COPY FROM STDIN sends Sync right behind the Execute and
    # again after CopyDone. PostgreSQL ignores the first (it reaches it in copy-in mode) and
    # answers one ReadyForQuery; counting two held the only server for good.
    process = pgmux_factory(pool_mode=mode, default_pool_size=1, query_wait_timeout=5)
    conn = pq.PGconn.connect(process.dsn(USER, PASSWORD).encode())
    assert conn.status == pq.ConnStatus.OK, conn.error_message
    if tracked:  # with a named statement, pgmux matches each reply of the link to its request
        assert conn.prepare(b"one", b"select 1").status == pq.ExecStatus.COMMAND_OK
        assert conn.exec_prepared(b"one", None).get_value(0, 0) == b"1"
    for row in range(3):
        assert conn.send_query_params(f"copy {table} (id, name) from stdin".encode(), None) is None
        _libpq_result(conn, pq.ExecStatus.COPY_IN)
        conn.put_copy_data(f"{row}\tlibpq\n".encode())
        conn.put_copy_end()
        _libpq_result(conn, pq.ExecStatus.COMMAND_OK)
        assert conn.get_result() is None
    # The copying client stays connected and idle: another one gets the only server at once.
    with psycopg.connect(process.dsn(USER, PASSWORD), autocommit=True) as other:
        assert other.execute(f"select count(*) from {table}").fetchone() == (3,)
    if tracked:
        assert conn.exec_prepared(b"one", None).get_value(0, 0) == b"1"
    assert conn.exec_(b"select 2").get_value(0, 0) == b"2"
    conn.finish()


@pytest.mark.parametrize("mode", ["transaction", "statement"])
def test_a_client_that_leaves_mid_copy_does_not_pass_its_server_on(
    pgmux_factory: Callable[..., PgmuxProcess], table: str, mode: str
) -> None:
    # After CopyInResponse the server waits for copy data: a backend left like that would read
    # the next client's messages as copy data. It must be closed, not reused.
    process = pgmux_factory(pool_mode=mode, default_pool_size=1, query_wait_timeout=5)
    conn = pq.PGconn.connect(process.dsn(USER, PASSWORD).encode())
    pid = conn.exec_(b"select pg_backend_pid()").get_value(0, 0)
    conn.send_query_params(f"copy {table} (id, name) from stdin".encode(), None)
    _libpq_result(conn, pq.ExecStatus.COPY_IN)
    conn.put_copy_data(b"1\tleft\n")
    conn.flush()
    conn.finish()  # gone without CopyDone
    with psycopg.connect(process.dsn(USER, PASSWORD), autocommit=True) as other:
        row = other.execute(f"select pg_backend_pid()::text, count(*) from {table}").fetchone()
        assert row is not None and row[0].encode() != pid  # a new backend, not the copying one
        assert row[1] == 0  # and the abandoned row was never committed
        assert other.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_notices(pgmux_for: PgmuxFor, mode: str) -> None:
    notices: list[str] = []
    with connect(pgmux_for(mode), mode) as conn:
        conn.add_notice_handler(lambda d: notices.append(f"{d.severity} {d.message_primary}"))
        conn.execute(NOTICE_SQL)
        assert notices == ["NOTICE hello 42", "NOTICE bye"]
        assert conn.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize("mode", TX_MODES)
def test_psycopg_pipeline(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    with connect(pgmux_for(mode), mode) as conn:
        with conn.pipeline():
            cursors = [conn.execute("select %s::int * 3", (i,)) for i in range(50)]
            conn.execute(f"insert into {table} (id, name) values (%s, %s)", (1, "one"))
        assert [c.fetchone() for c in cursors] == [(i * 3,) for i in range(50)]
        # An error aborts the rest of its batch; the connection goes on afterwards.
        with pytest.raises(errors.UniqueViolation), conn.pipeline():
            conn.execute(f"insert into {table} (id, name) values (%s, %s)", (1, "dup"))
            conn.execute("select pg_sleep(0)")
        assert conn.execute(f"select name from {table}").fetchall() == [("one",)]
    with connect(pgmux_for(mode), mode, autocommit=False) as conn, conn.pipeline():
        for i in range(2, 12):
            conn.execute(f"insert into {table} (id, name) values (%s, %s)", (i, str(i)))
        conn.rollback()
        conn.execute(f"insert into {table} (id, name) values (%s, %s)", (20, "committed"))
        conn.commit()
    with connect(pgmux_for(mode), mode) as conn:
        assert conn.execute(f"select id from {table} order by id").fetchall() == [(1,), (20,)]


BATCHES = 5


def send_pipeline(pgconn: PGconn, cid: int) -> None:
    """Queue BATCHES batches of queries, each closed by a Sync, without reading any result."""
    pgconn.enter_pipeline_mode()
    for batch in range(BATCHES):
        for j in range(3):
            failing = (cid, batch, j) == (0, 2, 1)
            sql = b"select 1 / $2::int * $1::int" if failing else b"select $1::int + $2::int * 0"
            pgconn.send_query_params(sql, [str(cid * 100 + batch * 10 + j).encode(), b"0"])
        pgconn.pipeline_sync()
    assert pgconn.flush() == 0


def read_pipeline(pgconn: PGconn, cid: int) -> list[str]:
    """One entry per query ('value', 'error' or 'aborted') and 'sync' per Sync."""
    outcomes: list[str] = []
    status = pq.ExecStatus
    while outcomes.count("sync") < BATCHES:
        result = pgconn.get_result()
        if result is None:
            continue  # the end of one query's results
        if result.status == status.TUPLES_OK:
            outcomes.append((result.get_value(0, 0) or b"").decode())
        elif result.status == status.FATAL_ERROR:
            outcomes.append("error")
        elif result.status == status.PIPELINE_ABORTED:
            outcomes.append("aborted")
        else:
            assert result.status == status.PIPELINE_SYNC, result.status
            outcomes.append("sync")
    pgconn.exit_pipeline_mode()
    return outcomes


def test_libpq_pipelines_with_many_syncs_share_one_server(
    pgmux_factory: Callable[..., PgmuxProcess],
) -> None:
    # Each client has several Syncs in flight at once; its server must stay with it until
    # the last ReadyForQuery, while the other client's pipeline waits for the only server.
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=1)
    pgconns = [pq.PGconn.connect(pgmux.dsn(USER, PASSWORD).encode()) for _ in range(2)]
    try:
        for pgconn in pgconns:
            assert pgconn.status == pq.ConnStatus.OK, pgconn.get_error_message()
        for cid, pgconn in enumerate(pgconns):
            send_pipeline(pgconn, cid)
        for cid, pgconn in enumerate(pgconns):
            expected = []
            for batch in range(BATCHES):
                values = [str(cid * 100 + batch * 10 + j) for j in range(3)]
                if (cid, batch) == (0, 2):
                    values = [values[0], "error", "aborted"]  # the rest of the batch is skipped
                expected += [*values, "sync"]
            assert read_pipeline(pgconn, cid) == expected
            assert pgconn.transaction_status == pq.TransactionStatus.IDLE
    finally:
        for pgconn in pgconns:
            pgconn.finish()


def test_psycopg_listen_notify_in_session_mode(pgmux_for: PgmuxFor) -> None:
    pgmux = pgmux_for("session")
    with connect(pgmux, "session") as listener, connect(pgmux, "session") as notifier:
        listener.execute("listen pgmux_channel")
        notifier.execute("select pg_notify('pgmux_channel', 'payload ' || %s)", ("1",))
        notifier.execute("notify pgmux_channel, 'payload 2'")
        received = [(n.channel, n.payload) for n in listener.notifies(timeout=5, stop_after=2)]
        assert received == [("pgmux_channel", "payload 1"), ("pgmux_channel", "payload 2")]


# -- psycopg (async) ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_async_queries_and_parameters(pgmux_for: PgmuxFor, mode: str) -> None:
    async def main() -> None:
        async with await aconnect(pgmux_for(mode), mode) as conn:
            cur = await conn.execute("select 41 + 1")
            assert await cur.fetchone() == (42,)
            for i in range(8):
                cur = await conn.execute("select %s::int * 2, %s::text", (i, f"v{i}"))
                assert await cur.fetchone() == (i * 2, f"v{i}")
            cur = await conn.execute("select g from generate_series(1, 3000) g")
            assert [r[0] async for r in cur] == list(range(1, 3001))

    asyncio.run(main())


@pytest.mark.parametrize("mode", TX_MODES)
def test_psycopg_async_transaction_rollback(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    async def main() -> None:
        async with await aconnect(pgmux_for(mode), mode, autocommit=False) as conn:
            await conn.execute(f"insert into {table} (id, name) values (1, 'rolled back')")
            await conn.rollback()
            async with conn.transaction():
                await conn.execute(f"insert into {table} (id, name) values (2, 'kept')")
                with pytest.raises(errors.UniqueViolation):
                    async with conn.transaction():
                        await conn.execute(f"insert into {table} (id, name) values (2, 'dup')")
            await conn.commit()
            cur = await conn.execute(f"select id, name from {table} order by id")
            assert await cur.fetchall() == [(2, "kept")]

    asyncio.run(main())


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_async_copy(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    rows = rows_of(200)

    async def main() -> None:
        async with await aconnect(pgmux_for(mode), mode) as conn:
            cur = conn.cursor()
            async with cur.copy(f"copy {table} (id, name, payload) from stdin") as copy:
                for row in rows:
                    await copy.write_row(row)
            query = f"copy (select id, name, payload from {table} order by id) to stdout"
            async with cur.copy(query) as copy:
                copy.set_types(["int4", "text", "bytea"])
                assert [row async for row in copy.rows()] == rows

    asyncio.run(main())


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_async_notices(pgmux_for: PgmuxFor, mode: str) -> None:
    notices: list[str] = []

    async def main() -> None:
        async with await aconnect(pgmux_for(mode), mode) as conn:
            conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
            await conn.execute(NOTICE_SQL)

    asyncio.run(main())
    assert notices == ["hello 42", "bye"]


@pytest.mark.parametrize("mode", TX_MODES)
def test_psycopg_async_pipeline(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    async def main() -> None:
        async with await aconnect(pgmux_for(mode), mode) as conn:
            async with conn.pipeline():
                cursors = [await conn.execute("select %s::int * 3", (i,)) for i in range(50)]
                for i in range(10):
                    sql = f"insert into {table} (id, name) values (%s, %s)"
                    await conn.execute(sql, (i, str(i)))
            assert [await c.fetchone() for c in cursors] == [(i * 3,) for i in range(50)]
            cur = await conn.execute(f"select count(*) from {table}")
            assert await cur.fetchone() == (10,)

    asyncio.run(main())


# -- asyncpg -----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_asyncpg_queries_and_parameters(pgmux_for: PgmuxFor, mode: str) -> None:
    async def main() -> None:
        conn = await asyncpg_connect(pgmux_for(mode), mode)
        try:
            assert await conn.fetchval("select 41 + 1") == 42
            for i in range(8):
                assert await conn.fetchrow("select $1::int * 2, $2::text", i, f"v{i}") == (
                    i * 2, f"v{i}",
                )  # fmt: skip
            row = await conn.fetchrow(
                "select $1::text, $2::bytea, $3::numeric, $4::date, $5::int[]",
                "x" * 100_000, b"\x00\xff", Decimal("1.50"), datetime.date(2024, 2, 29), [1, 2],
            )  # fmt: skip
            assert tuple(row) == ("x" * 100_000, b"\x00\xff", Decimal("1.50"),
                                  datetime.date(2024, 2, 29), [1, 2])  # fmt: skip
            with pytest.raises(asyncpg.DivisionByZeroError):
                await conn.fetchval("select 1 / $1::int", 0)
            rows = await conn.fetch("select g from generate_series(1, 5000) g")
            assert [r[0] for r in rows] == list(range(1, 5001))
        finally:
            await conn.close()

    asyncio.run(main())


@pytest.mark.parametrize("mode", TX_MODES)
def test_asyncpg_transaction_rollback(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    async def main() -> None:
        conn = await asyncpg_connect(pgmux_for(mode), mode)
        try:
            insert = f"insert into {table} (id, name) values ($1, $2)"
            with pytest.raises(asyncpg.UniqueViolationError):
                async with conn.transaction():
                    await conn.execute(insert, 1, "rolled back")
                    await conn.execute(insert, 1, "duplicate")
            async with conn.transaction():
                await conn.execute(insert, 2, "kept")
                with pytest.raises(asyncpg.DivisionByZeroError):
                    async with conn.transaction():  # a savepoint
                        await conn.execute(insert, 3, "savepoint")
                        await conn.execute("select 1 / 0")
            assert await conn.fetch(f"select id from {table}") == [(2,)]
        finally:
            await conn.close()

    asyncio.run(main())


@pytest.mark.parametrize("mode", MODES)
def test_asyncpg_copy_and_executemany(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    rows = rows_of(200)

    async def main() -> None:
        conn = await asyncpg_connect(pgmux_for(mode), mode)
        try:
            await conn.copy_records_to_table(table, records=rows, columns=["id", "name", "payload"])
            out = io.BytesIO()
            await conn.copy_from_query(f"select id, name from {table} order by id", output=out)
            expected = "".join(f"{i}\tname {i}\\ttab\n" for i, _, _ in rows)
            assert out.getvalue().decode() == expected
            # executemany sends every Bind/Execute before one Sync: a pipeline of its own.
            insert = f"insert into {table} (id, name) values ($1, $2)"
            await conn.executemany(insert, [(1000 + i, str(i)) for i in range(300)])
            assert await conn.fetchval(f"select count(*) from {table}") == 500
            await conn.copy_to_table(table, source=io.BytesIO(b"5000\tfrom file\n"),
                                     columns=["id", "name"])  # fmt: skip
            assert await conn.fetchval(f"select name from {table} where id = 5000") == "from file"
        finally:
            await conn.close()

    asyncio.run(main())


@pytest.mark.parametrize("mode", MODES)
def test_asyncpg_notices(pgmux_for: PgmuxFor, mode: str) -> None:
    async def main() -> list[str]:
        conn = await asyncpg_connect(pgmux_for(mode), mode)
        try:
            notices: asyncio.Queue[str] = asyncio.Queue()
            conn.add_log_listener(lambda _conn, msg: notices.put_nowait(msg.message))
            await conn.execute(NOTICE_SQL)
            return [await asyncio.wait_for(notices.get(), 5) for _ in range(2)]
        finally:
            await conn.close()

    assert asyncio.run(main()) == ["hello 42", "bye"]


def test_asyncpg_pool_in_transaction_mode(pgmux_for: PgmuxFor, table: str) -> None:
    # asyncpg's own pool resets each connection on release (RESET ALL, UNLISTEN *, ...).
    pgmux = pgmux_for("transaction")

    async def work(pool: asyncpg.Pool, i: int) -> int:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(f"insert into {table} (id, name) values ($1, $2)", i, str(i))
            value: int = await conn.fetchval("select $1::int * 2", i)
            return value

    async def main() -> None:
        async with asyncpg.create_pool(
            host=pgmux.host, port=pgmux.port, user=USER, password=PASSWORD, database="app",
            statement_cache_size=0, min_size=2, max_size=6,
        ) as pool:  # fmt: skip
            assert await asyncio.gather(*(work(pool, i) for i in range(40))) == [
                i * 2 for i in range(40)
            ]
            assert await pool.fetchval(f"select count(*) from {table}") == 40

    asyncio.run(main())


# -- psql --------------------------------------------------------------------------------------


def psql(pgmux: PgmuxProcess, script: str) -> subprocess.CompletedProcess[str]:
    argv = ["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-h", pgmux.host,
            "-p", str(pgmux.port), "-U", USER, "-d", "app", "-f", "-"]  # fmt: skip
    env = dict(os.environ, PGPASSWORD=PASSWORD, PGCONNECT_TIMEOUT="5")
    return subprocess.run(argv, input=script, capture_output=True, text=True, env=env, timeout=30)


@pytest.mark.parametrize("mode", MODES)
def test_psql_queries_copy_and_notices(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    script = (
        "select 41 + 1;\n"
        "\\set n 21\n"
        "select :n * 2 as doubled;\n"
        f"copy {table} (id, name) from stdin;\n1\tone\n2\ttwo\n\\.\n"
        f"copy (select id, name from {table} order by id) to stdout;\n"
        f"{NOTICE_SQL};\n"
        "select current_user;\n"
    )
    done = psql(pgmux_for(mode), script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["42", "42", "1\tone", "2\ttwo", USER]
    assert "NOTICE:  hello 42" in done.stderr and "NOTICE:  bye" in done.stderr


@pytest.mark.parametrize("mode", TX_MODES)
def test_psql_transaction_rollback(pgmux_for: PgmuxFor, mode: str, table: str) -> None:
    script = (
        f"begin;\ninsert into {table} (id, name) values (1, 'rolled back');\nrollback;\n"
        f"begin;\ninsert into {table} (id, name) values (2, 'kept');\n"
        "savepoint s;\n"
        f"insert into {table} (id, name) values (3, 'to savepoint');\n"
        "rollback to savepoint s;\ncommit;\n"
        f"select id, name from {table} order by id;\n"
    )
    done = psql(pgmux_for(mode), script)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["2|kept"]


def test_psql_error_stops_script(pgmux_for: PgmuxFor) -> None:
    done = psql(pgmux_for("transaction"), "select 1;\nselect 1 / 0;\nselect 2;\n")
    assert done.returncode == 3
    assert done.stdout.splitlines() == ["1"]
    assert "division by zero" in done.stderr


# -- many clients, few server connections -----------------------------------------------------

CLIENTS = 200
POOL_SIZE = 10
ROUNDS = 4


async def one_client(dsn: str, cid: int) -> set[int]:
    """Transactions whose every answer depends on ``cid``; returns the backend pids seen."""
    pids: set[int] = set()
    async with await psycopg.AsyncConnection.connect(dsn, prepare_threshold=None) as conn:
        for round_ in range(ROUNDS):
            value = cid * 1000 + round_
            async with conn.transaction():
                cur = await conn.execute("select %s::int * 2, pg_backend_pid()", (cid,))
                doubled, pid = await cur.fetchone() or (None, 0)
                assert doubled == cid * 2
                await conn.execute("select set_config('pgmux.test_value', %s, true)", (str(value),))
                await conn.execute("select pg_sleep(0.002)")  # others queue meanwhile
                cur = await conn.execute(
                    "select current_setting('pgmux.test_value')::int, pg_backend_pid()"
                )
                assert await cur.fetchone() == (value, pid)  # same server all transaction
                if round_ == 0:
                    await conn.execute("create temp table mine (v int) on commit drop")
                    await conn.execute("insert into mine values (%s)", (value,))
                    cur = await conn.execute("select sum(v) from mine")
                    assert await cur.fetchone() == (value,)
            pids.add(pid)
    return pids


async def sample_servers(dsn: str, since: datetime.datetime, stop: asyncio.Event) -> list[int]:
    counts: list[int] = []
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        while not stop.is_set():
            cur = await conn.execute(
                "select count(*) from pg_stat_activity where datname = 'app'"
                " and usename = %s and backend_type = 'client backend'"
                " and backend_start >= %s",
                (USER, since),
            )
            row = await cur.fetchone()
            counts.append(row[0] if row else -1)
            await asyncio.sleep(0.01)
    return counts


def test_many_clients_share_a_small_pool(
    pgmux_factory: Callable[..., PgmuxProcess], pg: PostgresCluster
) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=POOL_SIZE,
                          max_client_conn=500)  # fmt: skip
    admin_dsn = pg.dsn("app")
    with psycopg.connect(admin_dsn) as conn:
        since = conn.execute("select clock_timestamp()").fetchone()[0]  # type: ignore[index]

    async def main() -> tuple[list[set[int]], list[int]]:
        stop = asyncio.Event()
        sampler = asyncio.create_task(sample_servers(admin_dsn, since, stop))
        try:
            dsn = pgmux.dsn(USER, PASSWORD)
            results = await asyncio.wait_for(
                asyncio.gather(*(one_client(dsn, cid) for cid in range(CLIENTS))), 30
            )
        finally:
            stop.set()
        return results, await sampler

    started = time.monotonic()
    results, counts = asyncio.run(main())
    elapsed = time.monotonic() - started
    all_pids = set().union(*results)
    assert len(all_pids) <= POOL_SIZE, all_pids
    assert len(counts) >= 5, "pg_stat_activity was sampled too rarely to mean anything"
    assert max(counts) <= POOL_SIZE, counts
    assert max(counts) > 1, counts  # the clients really did run concurrently
    assert elapsed < 20, f"{CLIENTS} clients took {elapsed:.1f} s"
