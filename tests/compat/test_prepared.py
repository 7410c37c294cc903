"""Protocol-level named prepared statements through pgmux, message by message.

Most tests drive libpq directly (``pgconn.prepare``, ``exec_prepared``, ``close_prepared``,
pipeline mode) so that exactly the Parse/Bind/Describe/Close/Sync sequence under test is sent,
and compare the transcript (result status, SQLSTATE, message, values) with the same sequence on
a direct connection. Pools of one server connection make every client share it, so names and
LRU evictions meet; a fresh pgmux per test keeps its statement bookkeeping independent.
"""

from __future__ import annotations

import asyncio
import select
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psycopg
import pytest
from psycopg import errors, pq

from pgmux.testing.pooler import PgmuxProcess

from .conftest import PASSWORD, USER, target_of, watchdog
from .workloads import Target, run_tasks, run_threads

Result = tuple[str, str, str, list[Any]]
# Catches a client that hangs on a reply pgmux lost: the test fails instead of waiting forever.
TIMEOUTS = {"query_timeout": 5, "query_wait_timeout": 10}
WATCHDOG = 15.0


def connect(target: Target) -> psycopg.Connection[Any]:
    return psycopg.connect(target.dsn, autocommit=True)


def summary(res: pq.abc.PGresult) -> Result:
    field = pq.DiagnosticField
    return (
        pq.ExecStatus(res.status).name,
        (res.error_field(field.SQLSTATE) or b"").decode(),
        (res.error_field(field.MESSAGE_PRIMARY) or b"").decode(),
        [res.get_value(row, 0) for row in range(res.ntuples)],
    )


def prepare(conn: psycopg.Connection[Any], name: bytes, sql: bytes) -> Result:
    return summary(conn.pgconn.prepare(name, sql))


def execute(conn: psycopg.Connection[Any], name: bytes, *params: bytes) -> Result:
    return summary(conn.pgconn.exec_prepared(name, list(params)))


def query(conn: psycopg.Connection[Any], sql: bytes) -> Result:
    return summary(conn.pgconn.exec_(sql))


def server_statements(conn: psycopg.Connection[Any]) -> list[str]:
    """Named statements on the server connection this query runs on (pgmux's PGMUX_<n>)."""
    rows = conn.execute("SELECT name FROM pg_prepared_statements ORDER BY name").fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def tx_pgmux(new_pgmux: Callable[..., PgmuxProcess]) -> Iterator[Callable[..., PgmuxProcess]]:
    """A fresh pgmux in transaction mode, pool of 1 unless told, killed if the test hangs."""
    with ExitStack() as stack:

        def start(**settings: object) -> PgmuxProcess:
            merged: dict[str, object] = {"default_pool_size": 1, **TIMEOUTS, **settings}
            pgmux = new_pgmux(pool_mode="transaction", **merged)
            stack.enter_context(watchdog(pgmux, WATCHDOG, fail=False))
            return pgmux

        yield start


def through_both(
    direct: Target, pgmux: PgmuxProcess, scenario: Callable[[Target], Any]
) -> tuple[Any, Any]:
    return scenario(direct), scenario(target_of(pgmux))


# -- unknown names, errors, duplicate names ------------------------------------------------------


def unknown_names(target: Target) -> list[Any]:
    with connect(target) as conn:
        seen: list[Any] = [
            execute(conn, b"never"),
            summary(conn.pgconn.describe_prepared(b"never")),
            query(conn, b"DEALLOCATE never"),
            prepare(conn, b"known", b"SELECT 1"),  # from here on pgmux tracks the link
            execute(conn, b"never"),
            summary(conn.pgconn.describe_prepared(b"never")),
            execute(conn, b"known"),
        ]
    return seen


def test_bind_or_describe_of_a_name_never_prepared_gets_postgresqls_26000(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess]
) -> None:
    pgmux = tx_pgmux()
    expected, got = through_both(direct, pgmux, unknown_names)
    assert got == expected
    assert got[0] == ("FATAL_ERROR", "26000", 'prepared statement "never" does not exist', [])


def failed_parse(target: Target) -> list[Any]:
    with connect(target) as conn:
        return [
            prepare(conn, b"bad", b"SELEC 1"),
            execute(conn, b"bad"),
            prepare(conn, b"bad", b"SELECT 'fixed'"),
            execute(conn, b"bad"),
        ]


def test_a_failed_parse_leaves_no_statement(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess]
) -> None:
    pgmux = tx_pgmux()
    expected, got = through_both(direct, pgmux, failed_parse)
    assert expected[1][1] == "26000"
    assert got == expected


def duplicate_name(target: Target) -> list[Any]:
    with connect(target) as conn:
        return [
            prepare(conn, b"s", b"SELECT 1"),
            prepare(conn, b"s", b"SELECT 2"),
            execute(conn, b"s"),
        ]


def test_parse_of_a_name_in_use_gets_42P05(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess]
) -> None:
    pgmux = tx_pgmux()
    expected, got = through_both(direct, pgmux, duplicate_name)
    assert expected[1][1] == "42P05"
    assert got == expected


# -- two clients, one server ---------------------------------------------------------------------


def test_same_name_on_two_clients_never_collides(tx_pgmux: Callable[..., PgmuxProcess]) -> None:
    target = target_of(tx_pgmux())
    with connect(target) as a, connect(target) as b:
        assert prepare(a, b"s", b"SELECT 'a:' || $1::text")[0] == "COMMAND_OK"
        assert prepare(b, b"s", b"SELECT $1::int + 100")[0] == "COMMAND_OK"
        # Same text, different parameter types: two statements on the server, not one.
        assert prepare(a, b"t", b"SELECT $1")[0] == "COMMAND_OK"
        assert summary(b.pgconn.prepare(b"t", b"SELECT $1", [20]))[0] == "COMMAND_OK"
        for i in range(10):
            assert execute(a, b"s", b"%d" % i)[3] == [b"a:%d" % i]
            assert execute(b, b"s", b"%d" % i)[3] == [b"%d" % (i + 100)]
            assert summary(a.pgconn.describe_prepared(b"t")) == ("COMMAND_OK", "", "", [])
            assert a.pgconn.describe_prepared(b"t").param_type(0) == 25  # text (unknown -> text)
            assert b.pgconn.describe_prepared(b"t").param_type(0) == 20  # int8
        assert summary(a.pgconn.close_prepared(b"s"))[0] == "COMMAND_OK"
        assert execute(a, b"s", b"1")[1] == "26000"
        assert execute(b, b"s", b"1")[3] == [b"101"]  # b's statement outlives a's Close


@pytest.mark.parametrize("sql", [b"DEALLOCATE ALL", b"DISCARD ALL"])
def test_deallocate_all_by_one_client_leaves_the_others_statements(
    tx_pgmux: Callable[..., PgmuxProcess], sql: bytes
) -> None:
    target = target_of(tx_pgmux())
    with connect(target) as a, connect(target) as b:
        prepare(a, b"mine", b"SELECT 'a'")
        prepare(b, b"mine", b"SELECT 'a'")  # the same query: the same server statement
        prepare(b, b"other", b"SELECT 'b'")
        assert query(b, sql)[0] == "COMMAND_OK"
        assert execute(b, b"mine")[1] == "26000"
        assert execute(b, b"other")[1] == "26000"
        assert execute(a, b"mine")[3] == [b"a"]  # prepared again for a


# -- Close, DEALLOCATE, DISCARD ALL ---------------------------------------------------------------

DROPS: dict[str, Callable[[psycopg.Connection[Any]], Result]] = {
    "Close": lambda conn: summary(conn.pgconn.close_prepared(b"Stmt")),
    "DEALLOCATE name": lambda conn: query(conn, b'DEALLOCATE "Stmt"'),
    "DEALLOCATE PREPARE name": lambda conn: query(conn, b'DEALLOCATE PREPARE "Stmt";'),
    "DEALLOCATE ALL": lambda conn: query(conn, b"DEALLOCATE ALL"),
    "DISCARD ALL": lambda conn: query(conn, b"DISCARD ALL"),
}


@pytest.mark.parametrize("drop", list(DROPS))
def test_close_deallocate_and_discard_are_honoured(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess], drop: str
) -> None:
    def scenario(target: Target) -> list[Any]:
        with connect(target) as conn:
            seen = [prepare(conn, b"Stmt", b"SELECT 'first'"), prepare(conn, b"x", b"SELECT 'x'")]
            seen += [execute(conn, b"Stmt"), DROPS[drop](conn), execute(conn, b"Stmt")]
            seen += [execute(conn, b"x")]  # gone after DEALLOCATE ALL / DISCARD ALL only
            seen += [prepare(conn, b"Stmt", b"SELECT 'second'"), execute(conn, b"Stmt")]
            seen += [query(conn, b"DEALLOCATE Stmt")]  # unquoted: "stmt", which does not exist
        return seen

    pgmux = tx_pgmux()
    expected, got = through_both(direct, pgmux, scenario)
    assert got == expected
    assert expected[4][1] == "26000" and expected[7][3] == [b"second"]


# -- the per-server LRU and the per-client cap ----------------------------------------------------


def test_lru_closes_statements_on_the_server(tx_pgmux: Callable[..., PgmuxProcess]) -> None:
    target = target_of(tx_pgmux(max_prepared_statements=2))
    with connect(target) as conn, connect(target) as other:
        for k in range(5):
            prepare(conn, b"s%d" % k, b"SELECT %d + $1::int" % (k * 1000))
        for i in range(4):  # cycle: every Bind finds its statement evicted and re-prepares it
            for k in range(5):
                assert execute(conn, b"s%d" % k, b"%d" % i)[3] == [b"%d" % (k * 1000 + i)]
                on_server = server_statements(other)  # the pool's only server connection
                assert len(on_server) <= 2, on_server
                assert all(name.startswith("PGMUX_") for name in on_server)
    # psycopg's own prepared statements cycling on the same server.
    with psycopg.connect(target.dsn, autocommit=True) as conn:
        for i in range(4):
            for k in range(5):
                row = conn.execute(f"SELECT {k} * 10 + %s::int", (i,), prepare=True).fetchone()
                assert row == (k * 10 + i,)
        assert len(server_statements(conn)) <= 2

    # asyncpg's statement cache: three clients, five statements each, one server, room for two.
    async def asyncpg_client(c: int) -> list[Any]:
        conn = await asyncpg.connect(
            host=target.host, port=target.port, user=USER, password=PASSWORD, database="app"
        )
        try:
            return [
                await conn.fetchval(f"SELECT {k} * 10 + $1::int", c)
                for _ in range(4)
                for k in range(5)
            ]
        finally:
            await conn.close()

    expected = [[k * 10 + c for _ in range(4) for k in range(5)] for c in range(3)]
    assert run_tasks(3, asyncpg_client) == expected


def test_a_client_past_max_client_prepared_statements_gets_54000(
    tx_pgmux: Callable[..., PgmuxProcess],
) -> None:
    target = target_of(tx_pgmux(default_pool_size=2, max_client_prepared_statements=10))
    with connect(target) as churn:  # closing what it no longer needs keeps it under the cap
        for k in range(50):
            assert prepare(churn, b"c", b"SELECT %d" % k)[0] == "COMMAND_OK"
            assert execute(churn, b"c")[3] == [b"%d" % k]
            assert summary(churn.pgconn.close_prepared(b"c"))[0] == "COMMAND_OK"
    with connect(target) as bystander, connect(target) as greedy:
        prepare(bystander, b"b", b"SELECT 'bystander'")
        for k in range(10):
            assert greedy.execute(f"SELECT {k}", prepare=True).fetchone() == (k,)
        with pytest.raises(errors.ProgramLimitExceeded, match="max_client_prepared_statements"):
            greedy.execute("SELECT 10", prepare=True)
        assert greedy.closed or greedy.pgconn.status == pq.ConnStatus.BAD  # disconnected
        assert execute(bystander, b"b")[3] == [b"bystander"]


# -- unnamed statements ---------------------------------------------------------------------------


def test_unnamed_statements_pass_through(tx_pgmux: Callable[..., PgmuxProcess]) -> None:
    target = target_of(tx_pgmux())
    with psycopg.connect(target.dsn, autocommit=True, prepare_threshold=None) as conn:
        for i in range(10):
            assert conn.execute("SELECT %s::int * 3", (i,)).fetchone() == (i * 3,)

    async def asyncpg_client(c: int) -> list[Any]:
        conn = await asyncpg.connect(
            host=target.host,
            port=target.port,
            user=USER,
            password=PASSWORD,
            database="app",
            statement_cache_size=0,
        )
        try:
            return [await conn.fetchval("SELECT $1::int + 1", i) for i in range(10)]
        finally:
            await conn.close()

    assert run_tasks(3, asyncpg_client) == [list(range(1, 11))] * 3
    with psycopg.connect(target.dsn, autocommit=True, prepare_threshold=None) as conn:
        assert server_statements(conn) == []


# -- errors inside a pipeline ---------------------------------------------------------------------


def read_pipeline(pgconn: pq.abc.PGconn, timeout: float = 5.0) -> list[Result]:
    """Results up to and including the next PIPELINE_SYNC, failing after ``timeout``."""
    results: list[Result] = []
    while True:
        while pgconn.is_busy():
            if not select.select([pgconn.socket], [], [], timeout)[0]:
                pytest.fail(f"no ReadyForQuery within {timeout} s; results so far: {results}")
            pgconn.consume_input()
        res = pgconn.get_result()
        if res is None:
            continue
        results.append(summary(res))
        if res.status == pq.ExecStatus.PIPELINE_SYNC:
            return results


def error_before_sync(target: Target, then: Callable[[pq.abc.PGconn], None]) -> list[Any]:
    """A pipeline whose error reaches the client before it sends the rest and the Sync."""
    with connect(target) as conn:
        pgconn = conn.pgconn
        seen: list[Any] = [prepare(conn, b"s%d" % k, b"SELECT 's%d'" % k) for k in range(3)]
        pgconn.enter_pipeline_mode()
        pgconn.send_query_params(b"SELECT 1/0", None)
        pgconn.send_flush_request()
        pgconn.flush()
        seen.append(read_until_error(pgconn))
        then(pgconn)
        pgconn.pipeline_sync()
        pgconn.flush()
        seen.append(read_pipeline(pgconn))
        pgconn.exit_pipeline_mode()
        seen += [execute(conn, b"s%d" % k) for k in range(3)]
        seen.append(conn.execute("SELECT 'still usable'").fetchone())
    with connect(target) as other:  # the pool's only server connection is free again
        seen.append(other.execute("SELECT 'other client'").fetchone())
    return seen


def read_until_error(pgconn: pq.abc.PGconn, timeout: float = 5.0) -> Result:
    while pgconn.is_busy():
        if not select.select([pgconn.socket], [], [], timeout)[0]:
            pytest.fail("the error did not come back")
        pgconn.consume_input()
    res = pgconn.get_result()
    assert res is not None and pgconn.get_result() is None
    return summary(res)


AFTER_ERROR: dict[str, Callable[[pq.abc.PGconn], None]] = {
    "nothing": lambda pgconn: None,
    "unnamed": lambda pgconn: pgconn.send_query_params(b"SELECT 2", None),
    "named, on the server": lambda pgconn: pgconn.send_query_prepared(b"s2", []),
    "named, evicted": lambda pgconn: pgconn.send_query_prepared(b"s0", []),
    "new Parse": lambda pgconn: pgconn.send_prepare(b"late", b"SELECT 'late'"),
}


@pytest.mark.parametrize("then", list(AFTER_ERROR))
def test_requests_after_an_error_in_a_pipeline(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess], then: str
) -> None:
    # max_prepared_statements=2: s0 is no longer on the server when the pipeline runs.
    pgmux = tx_pgmux(max_prepared_statements=2)
    expected = error_before_sync(direct, AFTER_ERROR[then])
    got = error_before_sync(target_of(pgmux), AFTER_ERROR[then])
    assert got == expected


def eviction_in_failed_pipeline(target: Target) -> list[Any]:
    with connect(target) as conn:
        pgconn = conn.pgconn
        pgconn.enter_pipeline_mode()
        pgconn.send_prepare(b"p1", b"SELECT 11")
        pgconn.send_query_prepared(b"p1", [])
        pgconn.send_prepare(b"p2", b"SELECT 1/0")
        pgconn.send_query_prepared(b"p2", [])  # fails: the server skips the rest
        pgconn.send_prepare(b"p3", b"SELECT 33")  # pgmux evicts p1's statement with a Close
        pgconn.pipeline_sync()
        seen: list[Any] = [read_pipeline(pgconn)]
        pgconn.exit_pipeline_mode()
        seen += [execute(conn, b"p1"), execute(conn, b"p3")]
    return seen


def test_an_eviction_skipped_after_an_error_keeps_bookkeeping_right(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess]
) -> None:
    pgmux = tx_pgmux(max_prepared_statements=2)
    expected, got = through_both(direct, pgmux, eviction_in_failed_pipeline)
    assert expected[1][3] == [b"11"] and expected[2][1] == "26000"
    assert got == expected


def psycopg_pipeline_errors(target: Target, clients: int) -> list[Any]:
    """psycopg: a failing statement in a pipeline, then others, then Sync; then more work."""

    def client(c: int) -> list[Any]:
        seen: list[Any] = []
        with psycopg.connect(target.dsn) as conn:
            for i in range(6):  # named statements on the client, shared names on pgmux
                seen.append(conn.execute("SELECT %s::int + %s::int", (c, i)).fetchall())
            for round_ in range(3):
                try:
                    with conn.transaction(), conn.pipeline():
                        conn.execute("SELECT %s::int + %s::int", (c, round_))
                        conn.execute("SELECT 1 / (%s::int - %s::int)", (c, c), prepare=True)
                        conn.execute("SELECT %s::int * %s::int", (c, round_), prepare=True)
                        conn.execute("SELECT %s::int + %s::int", (c, 100))
                except errors.DivisionByZero as error:
                    seen.append(error.sqlstate)
                with conn.transaction():
                    seen.append(
                        conn.execute(
                            "SELECT %s::int * %s::int", (c, round_), prepare=True
                        ).fetchall()
                    )
                    seen.append(conn.execute("SELECT %s::int + %s::int", (c, round_)).fetchall())
        return seen

    return run_threads(clients, client)


def test_psycopg_pipeline_errors_leave_bookkeeping_right(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess]
) -> None:
    pgmux = tx_pgmux(default_pool_size=2)
    expected = psycopg_pipeline_errors(direct, 10)
    assert psycopg_pipeline_errors(target_of(pgmux), 10) == expected


# -- statements that drop prepared statements, however they are sent ------------------------------

SENT_OTHERWISE: dict[str, Callable[[psycopg.Connection[Any]], Result]] = {
    "DEALLOCATE ALL, extended protocol": lambda c: summary(
        c.pgconn.exec_params(b"DEALLOCATE ALL", None)
    ),
    "DISCARD ALL, extended protocol": lambda c: summary(c.pgconn.exec_params(b"DISCARD ALL", None)),
    "DEALLOCATE name, extended protocol": lambda c: summary(
        c.pgconn.exec_params(b"DEALLOCATE t", None)
    ),
    "DEALLOCATE ALL after another statement": lambda c: query(c, b"SELECT 1; DEALLOCATE ALL"),
    "DEALLOCATE name after another statement": lambda c: query(c, b"SELECT 1; DEALLOCATE t"),
    "DEALLOCATE name between statements": lambda c: query(c, b'SELECT 1; DEALLOCATE "t"; SELECT 2'),
}


@pytest.mark.parametrize("drop", list(SENT_OTHERWISE))
def test_deallocate_sent_otherwise_keeps_bookkeeping_right(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess], drop: str
) -> None:
    def scenario(target: Target) -> list[Any]:
        with connect(target) as a, connect(target) as b:
            seen = [prepare(a, b"s", b"SELECT 'a'"), prepare(b, b"t", b"SELECT 'a'")]
            seen.append(SENT_OTHERWISE[drop](b))
            seen += [execute(a, b"s"), execute(b, b"t")]  # a's statement must survive
            seen += [prepare(b, b"t", b"SELECT 'again'"), execute(b, b"t")]
        return seen

    expected, got = through_both(direct, tx_pgmux(), scenario)
    assert expected[3][3] == [b"a"]
    assert got == expected


def test_asyncpg_recovers_from_a_schema_change(
    direct: Target, tx_pgmux: Callable[..., PgmuxProcess]
) -> None:
    async def scenario(target: Target) -> list[Any]:
        conn = await asyncpg.connect(
            host=target.host, port=target.port, user=USER, password=PASSWORD, database="app"
        )
        seen: list[Any] = []
        try:
            await conn.execute(
                "DROP TABLE IF EXISTS compat_altered; CREATE TABLE compat_altered (a int);"
                " INSERT INTO compat_altered VALUES (1)"
            )
            seen.append([tuple(r) for r in await conn.fetch("SELECT * FROM compat_altered")])
            await conn.execute("ALTER TABLE compat_altered ADD COLUMN b int DEFAULT 2")
            for _ in range(2):  # asyncpg prepares the query again by itself
                try:
                    seen.append(
                        [tuple(r) for r in await conn.fetch("SELECT * FROM compat_altered")]
                    )
                except asyncpg.PostgresError as error:
                    seen.append(f"{type(error).__name__}: {error}")
        finally:
            await conn.close()
        return seen

    expected, got = through_both(direct, tx_pgmux(), lambda t: asyncio.run(scenario(t)))
    assert expected[1:] == [[(1, 2)], [(1, 2)]]
    assert got == expected
