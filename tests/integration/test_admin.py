"""The admin console end to end: psql against the virtual databases ``pgmux`` and ``pgbouncer``.

Every command is checked against a situation the test sets up with real clients (a transaction
held open, a client queued behind it), so the numbers it shows are the numbers it must show.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import asyncpg
import psycopg
import pytest

from pgmux.testing.pooler import PgmuxProcess

# SHOW POOLS as PgBouncer has it (its newest versions append load_balance_hosts).
POOL_COLUMNS = [
    "database", "user", "cl_active", "cl_waiting", "cl_active_cancel_req",
    "cl_waiting_cancel_req", "sv_active", "sv_active_cancel", "sv_being_canceled", "sv_idle",
    "sv_used", "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode",
]  # fmt: skip
APP = ("scram_user", "scram_pw")


def psql(
    pgmux: PgmuxProcess,
    *commands: str,
    user: str = "admin",
    password: str = "admin",
    dbname: str = "pgmux",
    timeout: float = 15,
) -> subprocess.CompletedProcess[str]:
    """Run ``commands`` (one ``-c`` each) on the console; errors come with their SQLSTATE."""
    argv = ["psql", "-X", "-A", "-F|", "-P", "footer=off", "-v", "VERBOSITY=verbose",
            "-h", pgmux.host, "-p", str(pgmux.port), "-U", user, "-d", dbname]
    for command in commands:
        argv += ["-c", command]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = password
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)


def show(pgmux: PgmuxProcess, what: str, **login: str) -> tuple[list[str], list[dict[str, str]]]:
    """``SHOW what`` as (column names, rows as dicts)."""
    result = psql(pgmux, f"SHOW {what}", **login)
    assert result.returncode == 0, result.stderr
    header, *lines = result.stdout.splitlines()
    names = header.split("|")
    return names, [dict(zip(names, line.split("|"), strict=True)) for line in lines]


def pool_row(pgmux: PgmuxProcess, db: str = "app", user: str = "scram_user") -> dict[str, str]:
    rows = [r for r in show(pgmux, "POOLS")[1] if (r["database"], r["user"]) == (db, user)]
    assert len(rows) == 1, rows
    return rows[0]


def config_value(pgmux: PgmuxProcess, key: str) -> str:
    return next(r["value"] for r in show(pgmux, "CONFIG")[1] if r["key"] == key)


def wait_until(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)


def connect(pgmux: PgmuxProcess, user: str = APP[0], password: str = APP[1],
            dbname: str = "app", **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(pgmux.dsn(user, password, dbname), **kwargs)  # type: ignore[arg-type]


@pytest.fixture
def threads() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=4) as executor:
        yield executor


def query_in_thread(threads: ThreadPoolExecutor, conn: psycopg.Connection, sql: str) -> Future:
    return threads.submit(lambda: conn.execute(sql).fetchall())


# -- SHOW ------------------------------------------------------------------------------------


@pytest.mark.parametrize("dbname", ["pgmux", "pgbouncer"])
def test_console_answers_under_both_names(pgmux_factory, dbname: str) -> None:
    pgmux = pgmux_factory()
    names, rows = show(pgmux, "VERSION", dbname=dbname)
    assert names == ["version"] and rows[0]["version"].startswith("pgmux ")
    names, rows = show(pgmux, "HELP", dbname=dbname)
    commands = {row["command"] for row in rows}
    assert {"SHOW POOLS", "SHOW STATS", "PAUSE", "RESUME", "RELOAD", "SHUTDOWN"} <= commands
    assert all(row["description"] for row in rows)


def test_show_pools_counts_a_held_transaction_and_a_waiter(pgmux_factory, threads) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=1)
    holder, waiter = connect(pgmux), connect(pgmux, autocommit=True)
    with holder, waiter:
        holder.execute("select 1")  # BEGIN ... still open
        names, _ = show(pgmux, "POOLS")
        assert names[: len(POOL_COLUMNS)] == POOL_COLUMNS  # pgmux's own columns may follow
        row = pool_row(pgmux)
        assert (row["cl_active"], row["cl_waiting"], row["sv_active"], row["sv_idle"]) == \
            ("2", "0", "1", "0")
        assert row["pool_mode"] == "transaction"

        queued = query_in_thread(threads, waiter, "select 42")
        wait_until(lambda: pool_row(pgmux)["cl_waiting"] == "1")
        time.sleep(1.1)
        row = pool_row(pgmux)
        assert (row["cl_active"], row["cl_waiting"], row["sv_active"]) == ("1", "1", "1")
        assert int(row["maxwait"]) >= 1 and 0 <= int(row["maxwait_us"]) < 1_000_000
        assert not queued.done()

        holder.commit()
        assert queued.result(timeout=5) == [(42,)]
        row = pool_row(pgmux)
        assert (row["cl_active"], row["cl_waiting"], row["sv_active"], row["sv_idle"],
                row["sv_login"], row["maxwait"]) == ("2", "0", "0", "1", "0", "0")


def test_show_stats_counts_transactions(pgmux_factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction")
    with connect(pgmux, autocommit=True) as conn:
        conn.execute("select 1")

        def totals() -> dict[str, str]:
            names, rows = show(pgmux, "STATS")
            assert "total_xact_count" in names and "avg_xact_count" in names
            return next(r for r in rows if r["database"] == "app")

        before = totals()
        for i in range(5):  # distinct texts: psycopg prepares a query on its 5th run
            conn.execute(f"select {i}")
        with conn.transaction():
            conn.execute("select 1")
            conn.execute("select 2")
        after = totals()
    assert int(after["total_xact_count"]) - int(before["total_xact_count"]) == 6
    # The transaction block counts BEGIN and COMMIT as queries too.
    assert int(after["total_query_count"]) - int(before["total_query_count"]) == 9
    assert int(after["total_received"]) > int(before["total_received"])
    assert int(after["total_sent"]) > int(before["total_sent"])


def test_show_clients_and_servers_are_linked(pgmux_factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction")
    with connect(pgmux, application_name="held") as conn:
        backend_pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        _, clients = show(pgmux, "CLIENTS")
        _, servers = show(pgmux, "SERVERS")
    app_client = next(c for c in clients if c["database"] == "app")
    admin_client = next(c for c in clients if c["database"] == "pgmux")
    assert (app_client["type"], app_client["user"], app_client["state"]) == \
        ("C", "scram_user", "active")
    assert app_client["application_name"] == "held"
    assert admin_client["user"] == "admin" and admin_client["application_name"] == "psql"
    assert len(servers) == 1
    server = servers[0]
    assert (server["type"], server["user"], server["database"], server["state"]) == \
        ("S", "scram_user", "app", "active")
    assert int(server["remote_pid"]) == backend_pid
    assert server["link"] == app_client["ptr"] and app_client["link"] == server["ptr"]


def test_show_databases_config_and_lists(pgmux_factory, pg) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=3)
    with connect(pgmux, autocommit=True) as conn:
        conn.execute("select 1")
        _, databases = show(pgmux, "DATABASES")
        names, config = show(pgmux, "CONFIG")
        _, lists = show(pgmux, "LISTS")
    app = next(d for d in databases if d["name"] == "app")
    assert (app["host"], app["port"], app["database"]) == (pg.host, str(pg.port), "app")
    assert (app["pool_size"], app["pool_mode"], app["paused"]) == ("3", "transaction", "0")
    assert app["current_connections"] == "1"

    assert names == ["key", "value", "default", "changeable"]
    settings = {row["key"]: row for row in config}
    assert settings["default_pool_size"] == {
        "key": "default_pool_size", "value": "3", "default": "20", "changeable": "yes"}
    assert settings["listen_port"]["value"] == str(pgmux.port)
    assert settings["listen_port"]["changeable"] == "no"
    assert settings["pool_mode"]["value"] == "transaction"

    items = {row["list"]: int(row["items"]) for row in lists}
    assert items["pools"] == 1 and items["used_servers"] == 1
    assert items["used_clients"] == 2  # the app client and this console session
    assert {"databases", "users", "login_clients"} <= set(items)


# -- control ---------------------------------------------------------------------------------


def test_pause_waits_for_transactions_then_holds_queries_until_resume(
    pgmux_factory, threads
) -> None:
    pgmux = pgmux_factory(pool_mode="transaction")
    holder, other = connect(pgmux), connect(pgmux, autocommit=True)
    with holder, other:
        old_pid = holder.execute("select pg_backend_pid()").fetchone()[0]
        pausing = threads.submit(psql, pgmux, "PAUSE app")
        time.sleep(0.7)
        assert not pausing.done(), "PAUSE returned while a transaction was open"
        holder.execute("select 2")  # the open transaction goes on undisturbed
        holder.commit()
        result = pausing.result(timeout=5)
        assert result.returncode == 0 and result.stdout.strip() == "PAUSE", result.stderr

        queued = query_in_thread(threads, other, "select pg_backend_pid()")
        time.sleep(0.7)
        assert not queued.done(), "a query ran on a paused database"
        assert pool_row(pgmux)["cl_waiting"] == "1"
        assert pool_row(pgmux)["sv_idle"] == "0"  # PAUSE closed the server connections
        assert next(d for d in show(pgmux, "DATABASES")[1] if d["name"] == "app")["paused"] == "1"

        assert psql(pgmux, "RESUME app").stdout.strip() == "RESUME"
        [(new_pid,)] = queued.result(timeout=5)
        assert new_pid != old_pid


def test_pause_holds_users_that_log_in_after_it(pgmux_factory, threads) -> None:
    pgmux = pgmux_factory(pool_mode="transaction")
    assert psql(pgmux, "PAUSE app").stdout.strip() == "PAUSE"

    def first_query() -> object:
        with connect(pgmux, autocommit=True) as conn:
            return conn.execute("select 1").fetchone()

    queued = threads.submit(first_query)
    time.sleep(1.0)
    running = not queued.done()
    psql(pgmux, "RESUME app")
    assert queued.result(timeout=5) == (1,)
    assert running, "a query ran on a paused database"


def test_pause_opens_no_server_connection_for_a_new_login(pgmux_factory, threads) -> None:
    """PAUSE is for restarting the database: nothing may connect to it until RESUME."""
    pgmux = pgmux_factory(pool_mode="transaction")
    assert psql(pgmux, "PAUSE").stdout.strip() == "PAUSE"

    def first_query() -> object:
        with connect(pgmux, autocommit=True) as conn:
            return conn.execute("select 1").fetchone()

    queued = threads.submit(first_query)
    time.sleep(1.0)
    servers = show(pgmux, "SERVERS")[1]
    logging_in = [r["sv_login"] for r in show(pgmux, "POOLS")[1]]
    psql(pgmux, "RESUME")
    assert queued.result(timeout=5) == (1,)
    assert servers == [] and logging_in in ([], ["0"]), (servers, logging_in)


def test_reconnect_replaces_server_connections(pgmux_factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction")
    with connect(pgmux, autocommit=True) as idle, connect(pgmux) as busy:
        first = idle.execute("select pg_backend_pid()").fetchone()[0]
        in_tx = busy.execute("select pg_backend_pid()").fetchone()[0]
        assert psql(pgmux, "RECONNECT app").stdout.strip() == "RECONNECT"
        # An open transaction keeps its connection; it is replaced once released.
        assert busy.execute("select pg_backend_pid()").fetchone()[0] == in_tx
        busy.commit()
        after = {idle.execute("select pg_backend_pid()").fetchone()[0],
                 busy.execute("select pg_backend_pid()").fetchone()[0]}
        busy.commit()
    assert not after & {first, in_tx}, "a server connection survived RECONNECT"


def test_kill_disconnects_only_that_databases_clients(pgmux_factory, pg) -> None:
    target = f"host={pg.host} port={pg.port} dbname=app"
    pgmux = pgmux_factory(pool_mode="transaction", databases={"app": target, "other": target})
    with connect(pgmux, autocommit=True) as victim, \
            connect(pgmux, dbname="other", autocommit=True) as bystander:
        victim.execute("select 1")
        bystander.execute("select 1")
        assert psql(pgmux, "KILL app").stdout.strip() == "KILL"
        with pytest.raises(psycopg.OperationalError) as excinfo:
            victim.execute("select 1")
        assert excinfo.value.sqlstate == "57P01"
        assert "KILL" in str(excinfo.value)
        assert bystander.execute("select 2").fetchone() == (2,)
    assert pool_row(pgmux)["sv_active"] == "0"


def test_reload_rereads_the_edited_ini(pgmux_factory, threads) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=1)
    holder, waiter = connect(pgmux), connect(pgmux, autocommit=True)
    with holder, waiter:
        holder.execute("select 1")  # holds the pool's only server connection
        queued = query_in_thread(threads, waiter, "select 2")
        wait_until(lambda: pool_row(pgmux)["cl_waiting"] == "1")

        pgmux.settings["default_pool_size"] = 2
        pgmux.write_config()
        result = psql(pgmux, "RELOAD", "SHOW CONFIG")
        assert result.returncode == 0, result.stderr
        assert result.stdout.startswith("RELOAD\n")
        assert "default_pool_size|2|20|yes" in result.stdout.splitlines()
        # The existing pool grows to its new size: the waiter need not wait for the holder.
        assert queued.result(timeout=5) == [(2,)]
        app = next(d for d in show(pgmux, "DATABASES")[1] if d["name"] == "app")
        assert (app["pool_size"], app["current_connections"]) == ("2", "2")

    pgmux.settings["default_pool_size"] = "many"
    pgmux.write_config()
    result = psql(pgmux, "RELOAD", "SHOW VERSION")
    assert "ERROR:  22023: reload failed" in result.stderr
    assert "pgbouncer.ini line" in result.stderr and "default_pool_size" in result.stderr
    assert "pgmux" in result.stdout  # the session went on after the error
    assert config_value(pgmux, "default_pool_size") == "2"


def test_shutdown_command_stops_the_process(pgmux_factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction")
    with connect(pgmux, autocommit=True) as conn:
        conn.execute("select 1")
        result = psql(pgmux, "SHUTDOWN")
        assert result.stdout.strip() == "SHUTDOWN", result.stderr
        assert pgmux.wait(timeout=5) == 0
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
    with pytest.raises(psycopg.OperationalError):
        connect(pgmux, connect_timeout=2)


# -- who may do what -------------------------------------------------------------------------


def test_stats_user_may_show_but_not_control(pgmux_factory) -> None:
    userlist = {"scram_user": "scram_pw", "admin": "admin", "watcher": "watch"}
    pgmux = pgmux_factory(userlist=userlist, stats_users="watcher")
    login = {"user": "watcher", "password": "watch"}
    assert show(pgmux, "POOLS", **login)[0][: len(POOL_COLUMNS)] == POOL_COLUMNS
    assert show(pgmux, "STATS", **login)[1] == []
    for command in ("PAUSE", "RESUME", "RECONNECT", "KILL app", "RELOAD", "SHUTDOWN"):
        result = psql(pgmux, command, **login)
        assert "ERROR:  42501" in result.stderr, (command, result.stderr)
    assert pgmux.process is not None and pgmux.process.poll() is None


def test_other_users_cannot_log_in_to_the_console(pgmux_factory) -> None:
    pgmux = pgmux_factory()
    result = psql(pgmux, "SHOW VERSION", user="scram_user", password="scram_pw")
    assert result.returncode != 0 and result.stdout == ""
    assert "admin_users" in result.stderr  # says what to change
    result = psql(pgmux, "SHOW VERSION", user="admin", password="wrong")
    assert result.returncode != 0 and "password authentication failed" in result.stderr
    result = psql(pgmux, "SHOW VERSION", user="nobody", password="x", dbname="pgbouncer")
    assert result.returncode != 0 and "password authentication failed" in result.stderr


def test_a_bad_command_is_an_error_and_the_session_goes_on(pgmux_factory) -> None:
    pgmux = pgmux_factory()
    result = psql(pgmux, "SHOW NONSENSE", "FROB THE KNOBS", "PAUSE nosuchdb",
                  "show version; show lists")
    assert "ERROR:  42601: invalid command 'SHOW NONSENSE'" in result.stderr
    assert "ERROR:  42601: invalid command 'FROB THE KNOBS'" in result.stderr
    assert "ERROR:  42704: no such database: nosuchdb" in result.stderr
    assert "HINT:  SHOW HELP lists the commands" in result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "version" and lines[2] == "list|items"


def test_extended_protocol_gets_a_clear_error(pgmux_factory) -> None:
    pgmux = pgmux_factory()
    with connect(pgmux, "admin", "admin", dbname="pgmux", autocommit=True) as conn:
        with pytest.raises(psycopg.errors.ProtocolViolation, match="simple query protocol"):
            conn.execute("SHOW VERSION", binary=True)  # Parse/Bind/Execute
        assert conn.closed
    with connect(pgmux, "admin", "admin", dbname="pgmux") as conn:
        # psycopg's default (no autocommit) sends BEGIN first: the error says what to do.
        with pytest.raises(psycopg.errors.SyntaxError) as excinfo:
            conn.execute("SHOW VERSION")
        assert "autocommit" in (excinfo.value.diag.message_hint or "")
    with connect(pgmux, "admin", "admin", dbname="pgmux", autocommit=True) as conn:
        assert conn.execute("SHOW VERSION").fetchone()[0].startswith("pgmux ")

    async def with_asyncpg() -> None:  # asyncpg's fetch always prepares
        conn = await asyncpg.connect(host=pgmux.host, port=pgmux.port, user="admin",
                                     password="admin", database="pgmux")
        try:
            with pytest.raises(asyncpg.PostgresError, match="simple query protocol"):
                await conn.fetch("SHOW VERSION")
        finally:
            await conn.close()

    asyncio.run(with_asyncpg())
