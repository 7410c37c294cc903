"""Where PgBouncer differs from PostgreSQL, pgmux must behave like PostgreSQL.

Where it can, a test does the same thing once straight to PostgreSQL and once through pgmux,
and wants the client to see the same:

- *ParameterStatus* says what the server says: ``client_encoding`` is ``UTF8`` when the client
  asked for ``utf8``, ``DateStyle`` is ``ISO, MDY`` for ``iso,mdy``, at login and after SET.
- *Startup parameters* are honoured: any run-time setting in the startup packet (as a key of its
  own or in ``options=-c name=value``) is in force in every transaction, on whichever server
  connection the client lands, even on a pool of one shared with a client that chose otherwise.
  A bad value fails the login with PostgreSQL's own error; ``ignore_startup_parameters`` drops
  a parameter, as PgBouncer does.
- *Backend identity* in session mode is the server's: ``pg_backend_pid()``, the pid in
  BackendKeyData and the pid in the client's own notifications agree. In transaction mode the
  BackendKeyData pid is pgmux's own (a client has no one backend), which these tests document.
- *A terminated backend* (``pg_terminate_backend`` of the client's own) gives that client
  PostgreSQL's FATAL 57P01 and nobody else notices. After a *server crash* (a backend killed
  with SIGKILL, on a cluster of its own since PostgreSQL then restarts every backend) the
  victim's connection is lost as it would be directly, and once PostgreSQL has recovered, a
  client that was idle meanwhile carries on: pgmux discarded the dead server connections.
- *Databases going away*: ``DROP DATABASE`` and ``CREATE DATABASE ... TEMPLATE`` through pgmux
  succeed although pgmux holds idle connections to that database; ``DROP DATABASE ... WITH
  (FORCE)`` run on PostgreSQL itself kills those connections, and pgmux carries on.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import psycopg
import pytest
from psycopg import errors

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

Factory = Callable[..., PgmuxProcess]
USER, PASSWORD = "scram_user", "scram_pw"
MODES = ("session", "transaction")
# Every parameter PostgreSQL 15 reports with ParameterStatus (GUC_REPORT).
REPORTED = (
    "application_name",
    "client_encoding",
    "DateStyle",
    "default_transaction_read_only",
    "in_hot_standby",
    "integer_datetimes",
    "IntervalStyle",
    "is_superuser",
    "server_encoding",
    "server_version",
    "session_authorization",
    "standard_conforming_strings",
    "TimeZone",
)
NOTICE_SQL = "DO $$ BEGIN RAISE NOTICE 'pgmux-notice'; END $$"


# -- helpers -----------------------------------------------------------------------------------


def direct(pg: PostgresCluster, **kwargs: Any) -> psycopg.Connection:
    return psycopg.connect(pg.dsn("app", USER, PASSWORD), autocommit=True, **kwargs)


def pooled(pgmux: PgmuxProcess, dbname: str = "app", **kwargs: Any) -> psycopg.Connection:
    return psycopg.connect(pgmux.dsn(USER, PASSWORD, dbname), autocommit=True, **kwargs)


def superuser(pg: PostgresCluster, dbname: str = "postgres") -> psycopg.Connection:
    return psycopg.connect(pg.dsn(dbname), autocommit=True)


def one(conn: psycopg.Connection, sql: str, params: tuple[Any, ...] = ()) -> Any:
    row = conn.execute(sql, params).fetchone()
    assert row is not None
    return row[0]


def reported(conn: psycopg.Connection) -> dict[str, str | None]:
    return {name: conn.info.parameter_status(name) for name in REPORTED}


def login_error(dsn: str, **kwargs: Any) -> psycopg.Error:
    with pytest.raises(psycopg.Error) as caught:
        psycopg.connect(dsn, **kwargs).close()
    return caught.value


def first_error(dsn: str) -> psycopg.Error:
    """The error of logging in and running one query (whichever of the two fails)."""
    with pytest.raises(psycopg.Error) as caught, psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("select 1")
    return caught.value


def server_report(error: psycopg.Error) -> str:
    """What the server said, as ``SEVERITY:  message`` plus any HINT line.

    libpq keeps no fields of an error that ends a login, only its text, so that is compared.
    """
    diag = error.diag
    if diag.message_primary is None:
        found = re.search(r"(?:FATAL|ERROR|PANIC):  .*", str(error), re.DOTALL)
        assert found is not None, f"no server error in {error!r}"
        return found.group().strip()
    text = f"{diag.severity_nonlocalized}:  {diag.message_primary}"
    if diag.message_hint:
        text += f"\nHINT:  {diag.message_hint}"
    return text


def wait_until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def sessions_on(pg: PostgresCluster, dbname: str) -> int:
    with superuser(pg) as conn:
        count: int = one(
            conn, "select count(*) from pg_stat_activity where datname = %s", (dbname,)
        )
        return count


@pytest.fixture
def start_pgmux(pgmux_factory: Factory) -> Factory:
    """``pgmux_factory`` with a short query_wait_timeout: a server never given back fails the
    test in seconds instead of hanging it for two minutes."""

    def start(**settings: Any) -> PgmuxProcess:
        settings.setdefault("query_wait_timeout", 10)
        return pgmux_factory(**settings)

    return start


@pytest.fixture
def scratch_db(pg: PostgresCluster) -> Iterator[str]:
    """A database of its own, owned by scram_user, dropped (by force) afterwards."""
    name = "pl_" + uuid.uuid4().hex[:10]
    pg.create_database(name, owner=USER)
    yield name
    with superuser(pg) as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')
        conn.execute(f'drop database if exists "{name}_copy" with (force)')


# -- pgmux bugs these tests found ---------------------------------------------------------------


# -- ParameterStatus ---------------------------------------------------------------------------


# Each scenario: connection keywords, then statements whose ParameterStatus replies count too.
SCENARIOS = {
    "client_encoding": (
        {"client_encoding": "utf8"},
        (
            "set client_encoding = 'unicode'",
            "set client_encoding to latin1",
            "set client_encoding = 'utf-8'",
        ),
    ),
    "datestyle": (
        {"options": "-c DateStyle=iso,mdy"},
        ("set datestyle = german", "set DateStyle to 'sql,dmy'", "reset datestyle"),
    ),
    "intervalstyle_and_timezone": (
        {"options": "-c intervalstyle=SQL_STANDARD -c timezone=europe/paris"},
        ("set intervalstyle = 'ISO_8601'", "set time zone 'utc'", "set timezone = 'Asia/TOKYO'"),
    ),
    "application_name": (
        {"application_name": "Mixed Case"},
        ("set application_name = 'other'",),
    ),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "scenario",
    sorted(SCENARIOS),
)
def test_parameter_status_is_what_postgresql_reports(
    pg: PostgresCluster, start_pgmux: Factory, mode: str, scenario: str
) -> None:
    kwargs, statements = SCENARIOS[scenario]
    pgmux = start_pgmux(pool_mode=mode, default_pool_size=2)
    with direct(pg, **kwargs) as plain, pooled(pgmux, **kwargs) as muxed:
        assert reported(muxed) == reported(plain)
        for sql in statements:
            plain.execute(sql)
            muxed.execute(sql)
            assert reported(muxed) == reported(plain), sql


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_sees_utf8_and_iso_mdy(start_pgmux: Factory, mode: str) -> None:
    """The two spellings the issue names, checked literally."""
    pgmux = start_pgmux(pool_mode=mode, default_pool_size=1)
    with pooled(pgmux, client_encoding="utf8", options="-c datestyle=iso,mdy") as conn:
        assert conn.info.parameter_status("client_encoding") == "UTF8"
        assert conn.info.parameter_status("DateStyle") == "ISO, MDY"
        conn.execute("set client_encoding = 'utf8'")
        assert conn.info.parameter_status("client_encoding") == "UTF8"
        conn.execute("set datestyle = 'iso, dmy'")
        assert conn.info.parameter_status("DateStyle") == "ISO, DMY"
        # Reported under PostgreSQL's spelling of the name, never the client's.
        assert conn.info.parameter_status("datestyle") is None


async def asyncpg_reported(port: int, **server_settings: str) -> tuple[str, str]:
    conn = await asyncpg.connect(
        host="127.0.0.1",
        port=port,
        user=USER,
        password=PASSWORD,
        database="app",
        server_settings=server_settings,
    )
    try:
        settings = conn.get_settings()
        return settings.client_encoding, settings.DateStyle
    finally:
        await conn.close()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    "server_settings",
    [
        # asyncpg always sends client_encoding='utf-8' (quotes included) in its startup packet.
        pytest.param({}, id="asyncpg_default"),
        pytest.param({"client_encoding": "utf8", "datestyle": "iso,mdy"}, id="lower_case"),
    ],
)
def test_asyncpg_sees_utf8_and_iso_mdy(
    pg: PostgresCluster, start_pgmux: Factory, mode: str, server_settings: dict[str, str]
) -> None:
    pgmux = start_pgmux(pool_mode=mode, default_pool_size=1)
    expected = asyncio.run(asyncpg_reported(pg.port, **server_settings))
    assert expected == ("UTF8", "ISO, MDY")
    assert asyncio.run(asyncpg_reported(pgmux.port, **server_settings)) == expected


# -- startup parameters ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "named",
    [
        pytest.param(False, id="unnamed_statements"),
        pytest.param(True, id="named_statements"),
    ],
)
def test_startup_settings_follow_each_client_on_a_shared_server(
    start_pgmux: Factory, named: bool
) -> None:
    """Three clients take turns on one server connection, each with its own startup settings.

    A sends client_min_messages=warning as a startup parameter of its own (asyncpg), B sends
    ``options=-c statement_timeout=1234`` (libpq), C sends neither. In every transaction each
    sees its own values, and A does not get the NOTICE that C gets. ``named``: the clients use
    named prepared statements from the start (asyncpg's statement cache, psycopg's
    prepare_threshold=0), whose replies pgmux tracks one by one.
    """
    pgmux = start_pgmux(pool_mode="transaction", default_pool_size=1, query_wait_timeout=3)
    check = (
        "select current_setting('client_min_messages'), current_setting('statement_timeout'),"
        " pg_backend_pid()"
    )
    rounds = 10

    async def scenario() -> None:
        a = await asyncpg.connect(
            host=pgmux.host,
            port=pgmux.port,
            user=USER,
            password=PASSWORD,
            database="app",
            server_settings={"client_min_messages": "warning"},
            statement_cache_size=100 if named else 0,
        )
        a_notices: list[str] = []
        a.add_log_listener(lambda _conn, msg: a_notices.append(msg.message))
        threshold = 0 if named else None
        with (
            pooled(pgmux, options="-c statement_timeout=1234", prepare_threshold=threshold) as b,
            pooled(pgmux, prepare_threshold=threshold) as c,
        ):
            c_notices: list[str] = []
            c.add_notice_handler(lambda diag: c_notices.append(diag.message_primary or ""))
            pids = set()
            try:
                for _ in range(rounds):
                    async with a.transaction():
                        row = await a.fetchrow(check)
                        await a.execute(NOTICE_SQL)
                        assert (row[0], row[1]) == ("warning", "0")
                        pids.add(row[2])
                    with b.transaction():
                        level, timeout, pid = b.execute(check).fetchone() or ()
                        assert (level, timeout) == ("notice", "1234ms")
                        pids.add(pid)
                    with c.transaction():
                        level, timeout, pid = c.execute(check).fetchone() or ()
                        c.execute(NOTICE_SQL)
                        assert (level, timeout) == ("notice", "0")
                        pids.add(pid)
                    # Autocommit statements are transactions too.
                    assert await a.fetchval("show client_min_messages") == "warning"
                    assert one(b, "show statement_timeout") == "1234ms"
                    assert one(c, "show statement_timeout") == "0"
            finally:
                await a.close()
            assert len(pids) == 1, "the clients did not share one server connection"
            assert a_notices == []
            assert c_notices == ["pgmux-notice"] * rounds

    asyncio.run(scenario())


SHOW_SETTINGS = (
    "select current_setting('statement_timeout'), current_setting('search_path'),"
    " current_setting('work_mem'), current_setting('lock_timeout'),"
    " current_schemas(false)::text"
)


@pytest.mark.parametrize("mode", MODES)
def test_startup_options_read_as_postgresql_reads_them(
    pg: PostgresCluster, start_pgmux: Factory, mode: str
) -> None:
    """``options`` values are configuration strings, not SQL literals: a list stays a list."""
    pgmux = start_pgmux(pool_mode=mode, default_pool_size=1)
    options = (
        "-c statement_timeout=1234 -c search_path=pg_catalog,public --work-mem=5MB"
        " -c lock_timeout=2s"
    )
    with direct(pg, options=options) as plain, pooled(pgmux, options=options) as muxed:
        expected = plain.execute(SHOW_SETTINGS).fetchone()
        assert expected == ("1234ms", "pg_catalog,public", "5MB", "2s", "{pg_catalog,public}")
        assert muxed.execute(SHOW_SETTINGS).fetchone() == expected


def test_startup_settings_in_session_mode(start_pgmux: Factory) -> None:
    pgmux = start_pgmux(pool_mode="session", default_pool_size=2)
    with pooled(pgmux, options="-c statement_timeout=1234 --work-mem=5MB") as conn:
        assert one(conn, "show statement_timeout") == "1234ms"
        assert one(conn, "show work_mem") == "5MB"
    # The next client of that server connection starts from the server's defaults.
    with pooled(pgmux) as conn:
        assert one(conn, "show statement_timeout") == "0"
        assert one(conn, "show work_mem") == "4MB"


# (connection keywords, what PostgreSQL says about them at login)
BAD_STARTUP = {
    "bad_value": {"options": "-c statement_timeout=banana"},
    "unknown_parameter": {"options": "-c no_such_parameter=1"},
    "bad_enum": {"options": "-c client_min_messages=loud"},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(BAD_STARTUP))
def test_invalid_startup_value_gets_postgresql_error(
    pg: PostgresCluster, start_pgmux: Factory, mode: str, case: str
) -> None:
    kwargs = BAD_STARTUP[case]
    pgmux = start_pgmux(pool_mode=mode, default_pool_size=2)
    expected = login_error(pg.dsn("app", USER, PASSWORD), **kwargs)
    with pooled(pgmux) as bystander:
        got = login_error(pgmux.dsn(USER, PASSWORD), **kwargs)
        assert server_report(got) == server_report(expected)
        # The failed login cost nobody else anything, and the next good login works.
        assert one(bystander, "select 1") == 1
    with pooled(pgmux, options="-c statement_timeout=5s") as conn:
        assert one(conn, "show statement_timeout") == "5s"


def test_invalid_startup_parameter_of_its_own_gets_postgresql_error(
    pg: PostgresCluster, start_pgmux: Factory
) -> None:
    """The same with a bare startup parameter (asyncpg sends server_settings as such)."""
    pgmux = start_pgmux(pool_mode="transaction", default_pool_size=1)

    async def attempt(port: int) -> asyncpg.PostgresError:
        with pytest.raises(asyncpg.PostgresError) as caught:
            conn = await asyncpg.connect(
                host=pg.host,
                port=port,
                user=USER,
                password=PASSWORD,
                database="app",
                server_settings={"client_min_messages": "loud"},
            )
            await conn.close()
        return caught.value

    expected = asyncio.run(attempt(pg.port))
    got = asyncio.run(attempt(pgmux.port))
    assert type(got) is type(expected)
    assert (got.sqlstate, got.severity, got.message) == (
        expected.sqlstate,
        expected.severity,
        expected.message,
    )


@pytest.mark.parametrize("ignore", [True, False])
def test_ignore_startup_parameters_keeps_pgbouncer_meaning(
    start_pgmux: Factory, ignore: bool
) -> None:
    settings = {"ignore_startup_parameters": "extra_float_digits"} if ignore else {}
    pgmux = start_pgmux(pool_mode="transaction", default_pool_size=1, **settings)

    async def show() -> str:
        conn = await asyncpg.connect(
            host=pgmux.host,
            port=pgmux.port,
            user=USER,
            password=PASSWORD,
            database="app",
            server_settings={"extra_float_digits": "3"},
        )
        try:
            value: str = await conn.fetchval("show extra_float_digits")
            return value
        finally:
            await conn.close()

    # Ignored: accepted and not applied (the server's default, 1). Otherwise honoured.
    assert asyncio.run(show()) == ("1" if ignore else "3")


# -- backend identity --------------------------------------------------------------------------


def test_session_mode_backend_identity_is_the_servers(
    pg: PostgresCluster, start_pgmux: Factory
) -> None:
    pgmux = start_pgmux(pool_mode="session", default_pool_size=2)
    with pooled(pgmux) as conn, superuser(pg, "app") as admin:
        pid = conn.info.backend_pid
        assert one(conn, "select pg_backend_pid()") == pid
        assert one(admin, "select usename from pg_stat_activity where pid = %s", (pid,)) == USER
        conn.execute("listen pgmux_self")
        conn.execute("notify pgmux_self, 'from me'")
        received = list(conn.notifies(timeout=5, stop_after=1))
        assert [(n.channel, n.payload, n.pid) for n in received] == [("pgmux_self", "from me", pid)]


def test_transaction_mode_backend_key_is_pgmux_own(
    pg: PostgresCluster, start_pgmux: Factory
) -> None:
    """What a transaction-mode client sees instead: a pid that names no PostgreSQL backend.

    The BackendKeyData pid is pgmux's own random number, fixed for the client's connection
    (CancelRequests carrying it reach whichever server the client holds), while
    ``pg_backend_pid()`` and a notification's pid name the server connection that ran it.
    """
    pgmux = start_pgmux(pool_mode="transaction", default_pool_size=2)
    with pooled(pgmux) as conn, superuser(pg, "app") as admin:
        pid = conn.info.backend_pid
        server_pid = one(conn, "select pg_backend_pid()")
        assert pid != server_pid
        assert one(admin, "select count(*) from pg_stat_activity where pid = %s", (pid,)) == 0
        conn.execute("listen pgmux_self")  # pins the client to its server (session_state=pin)
        conn.execute("notify pgmux_self, 'from me'")
        received = list(conn.notifies(timeout=5, stop_after=1))
        assert [n.pid for n in received] == [one(conn, "select pg_backend_pid()")]
        assert conn.info.backend_pid == pid


@pytest.mark.parametrize("mode", MODES)
def test_terminating_own_backend_is_like_postgresql(
    pg: PostgresCluster, start_pgmux: Factory, mode: str
) -> None:
    kill = "select pg_terminate_backend(pg_backend_pid())"
    with direct(pg) as conn:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(kill)
        expected = caught.value
        assert conn.closed
    assert isinstance(expected, errors.AdminShutdown)
    assert expected.diag.sqlstate == "57P01"

    pgmux = start_pgmux(pool_mode=mode, default_pool_size=2)
    with pooled(pgmux) as victim, pooled(pgmux) as bystander:
        assert one(bystander, "select 1") == 1
        with pytest.raises(psycopg.Error) as caught:
            victim.execute(kill)
        got = caught.value
        assert type(got) is type(expected)
        assert got.sqlstate == expected.sqlstate == "57P01"
        assert server_report(got) == server_report(expected)
        wait_until(lambda: victim.closed or victim.info.status != psycopg.pq.ConnStatus.OK)
        assert one(bystander, "select 2") == 2
        with pooled(pgmux) as newcomer:
            assert one(newcomer, "select 3") == 3


def test_terminating_own_backend_on_a_shared_server(start_pgmux: Factory) -> None:
    """Transaction mode, pool of one: the next client gets a fresh server, not an error."""
    pgmux = start_pgmux(pool_mode="transaction", default_pool_size=1)
    with pooled(pgmux) as victim, pooled(pgmux) as bystander:
        before = one(bystander, "select pg_backend_pid()")
        with pytest.raises(errors.AdminShutdown):
            victim.execute("select pg_terminate_backend(pg_backend_pid())")
        after = one(bystander, "select pg_backend_pid()")
        assert after != before
        assert one(bystander, "select 1") == 1


CRASH_SQL = "select pg_sleep(30) -- crash me"


@pytest.fixture
def crash_pg() -> Iterator[PostgresCluster]:
    """A PostgreSQL of its own: after a crash it restarts every backend, everyone's."""
    with PostgresCluster() as cluster:
        cluster.add_user(USER, PASSWORD)
        cluster.create_database("app", owner=USER)
        yield cluster


def crash_during_query(cluster: PostgresCluster, conn: psycopg.Connection) -> psycopg.Error:
    """Run CRASH_SQL on ``conn`` and SIGKILL the backend running it; return the client's error."""

    def kill() -> None:
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True) as admin:
            sql = "select pid from pg_stat_activity where query = %s and state = 'active'"
            deadline = time.monotonic() + 10
            while (row := admin.execute(sql, (CRASH_SQL,)).fetchone()) is None:
                assert time.monotonic() < deadline, "the query never showed up"
                time.sleep(0.02)
        os.kill(row[0], signal.SIGKILL)

    killer = threading.Thread(target=kill)
    killer.start()
    try:
        with pytest.raises(psycopg.Error) as caught:
            conn.execute(CRASH_SQL)
    finally:
        killer.join()
    return caught.value


def wait_for_recovery(cluster: PostgresCluster) -> None:
    def accepting() -> bool:
        try:
            psycopg.connect(cluster.dsn("app"), connect_timeout=2).close()
        except psycopg.OperationalError:
            return False
        return True

    wait_until(accepting, timeout=60)


def test_server_crash_is_like_postgresql_and_idle_clients_carry_on(
    crash_pg: PostgresCluster,
) -> None:
    direct_dsn = crash_pg.dsn("app", USER, PASSWORD)
    with psycopg.connect(direct_dsn, autocommit=True) as conn:
        expected = crash_during_query(crash_pg, conn)
        assert conn.closed
    # libpq's own "server closed the connection unexpectedly": no SQLSTATE, no server message.
    assert type(expected) is psycopg.OperationalError
    wait_for_recovery(crash_pg)

    target = f"host={crash_pg.host} port={crash_pg.port} dbname=app"
    settings = {"pool_mode": "transaction", "default_pool_size": 2, "query_wait_timeout": 10}
    with (
        PgmuxProcess({"app": target}, settings, userlist={USER: PASSWORD}) as pgmux,
        pooled(pgmux) as victim,
        pooled(pgmux) as bystander,
    ):
        assert one(bystander, "select 1") == 1  # pgmux now holds an idle server for it
        got = crash_during_query(crash_pg, victim)
        # pgmux says why before closing (FATAL 08006) where libpq makes up the message itself:
        # the same class of error for the application, and the connection is gone as well.
        assert isinstance(got, psycopg.OperationalError)
        wait_until(lambda: victim.closed)
        wait_for_recovery(crash_pg)
        # The bystander was idle through the crash: its next transaction gets a live server.
        assert one(bystander, "select 2") == 2
        with pooled(pgmux) as newcomer:
            assert one(newcomer, "select 3") == 3


# -- databases going away ----------------------------------------------------------------------


def test_drop_and_template_through_pgmux_while_it_holds_idle_servers(
    pg: PostgresCluster, start_pgmux: Factory, scratch_db: str
) -> None:
    pgmux = start_pgmux(
        pool_mode="transaction",
        default_pool_size=2,
        userlist={USER: PASSWORD, "postgres": pg.superuser_password},
    )
    with pooled(pgmux, scratch_db) as user_conn:
        assert one(user_conn, "select current_database()") == scratch_db
        assert sessions_on(pg, scratch_db) >= 1  # pgmux's idle server connection
        with psycopg.connect(
            pgmux.dsn("postgres", pg.superuser_password, "postgres"), autocommit=True
        ) as admin:
            admin.execute(f'create database "{scratch_db}_copy" template "{scratch_db}"')
            # The client of the template database carries on, on a new server connection.
            assert one(user_conn, "select current_database()") == scratch_db
            admin.execute(f'drop database "{scratch_db}_copy"')
            admin.execute(f'drop database "{scratch_db}"')
            exists = one(
                admin, "select count(*) from pg_database where datname = %s", (scratch_db,)
            )
            assert exists == 0


def test_drop_database_with_force_on_postgresql(
    pg: PostgresCluster, start_pgmux: Factory, scratch_db: str
) -> None:
    pgmux = start_pgmux(pool_mode="transaction", default_pool_size=2, server_login_retry=0.2)
    with pooled(pgmux, scratch_db) as x_client, pooled(pgmux) as app_client:
        # Two overlapping transactions: pgmux ends up with two idle servers to scratch_db.
        with (
            pooled(pgmux, scratch_db) as second,
            x_client.transaction(),
            second.transaction(),
        ):
            one(x_client, "select 1")
            one(second, "select 1")
        assert one(app_client, "select 1") == 1
        assert sessions_on(pg, scratch_db) == 2

        with superuser(pg) as admin:
            admin.execute(f'drop database "{scratch_db}" with (force)')
        wait_until(lambda: sessions_on(pg, scratch_db) == 0)

        # Clients of other databases never noticed.
        assert one(app_client, "select current_database()") == "app"
        with pooled(pgmux) as newcomer:
            assert one(newcomer, "select 1") == 1

        # A new client of the dropped database gets PostgreSQL's own answer (in transaction
        # mode at its first query: logging in to pgmux needs no server connection).
        expected = first_error(pg.dsn(scratch_db, USER, PASSWORD))
        got = first_error(pgmux.dsn(USER, PASSWORD, scratch_db))
        assert server_report(got) == server_report(expected)

        pg.create_database(scratch_db, owner=USER)
        time.sleep(0.3)  # server_login_retry after the failed login above

        # Once it is back, its clients work again: the one that stayed, and new ones.
        assert one(x_client, "select current_database()") == scratch_db
        with pooled(pgmux, scratch_db) as newcomer:
            assert one(newcomer, "select current_database()") == scratch_db
