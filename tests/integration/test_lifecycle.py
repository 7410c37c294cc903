"""Signals end to end: SIGHUP reloads without dropping anyone, SIGTERM and SIGINT drain.

The console is read with psycopg in autocommit mode (simple queries), clients are real psycopg
connections, and what committed is checked on PostgreSQL directly.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import psycopg
import pytest

from pgmux.testing.pooler import PgmuxProcess, render_userlist

APP = ("scram_user", "scram_pw")


def connect(pgmux: PgmuxProcess, user: str = APP[0], password: str = APP[1],
            **kwargs: object) -> psycopg.Connection:
    return psycopg.connect(pgmux.dsn(user, password), **kwargs)  # type: ignore[arg-type]


def connect_closing(pgmux: PgmuxProcess) -> contextlib.closing[psycopg.Connection]:
    """A connection that pgmux will cut: close it on the way out instead of committing."""
    return contextlib.closing(connect(pgmux))


def config_value(pgmux: PgmuxProcess, key: str) -> str:
    with psycopg.connect(pgmux.dsn("admin", "admin", dbname="pgmux"), autocommit=True) as conn:
        rows = conn.execute("SHOW CONFIG").fetchall()
    return next(value for name, value, _default, _changeable in rows if name == key)


def wait_until(
    predicate: Callable[[], bool], timeout: float = 10.0, what: Callable[[], str] = str
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"condition not reached in time\n{what()}"
        time.sleep(0.05)


def reload_and_wait(pgmux: PgmuxProcess, log_line: str) -> None:
    """SIGHUP with the rewritten ini; return once the log says ``log_line`` once more."""
    seen = pgmux.log().count(log_line)
    pgmux.reload()
    wait_until(lambda: pgmux.log().count(log_line) > seen, what=lambda: pgmux.output())


@pytest.fixture
def table(pg) -> str:
    pg.psql("DROP TABLE IF EXISTS lifecycle; CREATE TABLE lifecycle (step text);"
            "GRANT ALL ON lifecycle TO scram_user;", dbname="app")
    return "lifecycle"


def committed_steps(pg) -> list[str]:
    return pg.psql("SELECT step FROM lifecycle ORDER BY step", dbname="app").split()


# -- SIGHUP ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_sighup_reload_keeps_connected_clients(pgmux_factory, pg, table, mode: str) -> None:
    pgmux = pgmux_factory(pool_mode=mode, default_pool_size=5)
    with connect(pgmux) as conn:
        conn.execute("insert into lifecycle values ('before')")
        pgmux.settings["default_pool_size"] = 9
        reload_and_wait(pgmux, "config reloaded")
        assert config_value(pgmux, "default_pool_size") == "9"
        conn.execute("insert into lifecycle values ('during')")  # same transaction
        conn.commit()
        assert conn.execute("select 1").fetchone() == (1,)
        conn.commit()
    assert committed_steps(pg) == ["before", "during"]


def test_sighup_rereads_the_auth_file(pgmux_factory) -> None:
    pgmux = pgmux_factory(userlist={"scram_user": "scram_pw", "admin": "admin"})
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(pgmux, "plain_user", "plain_pw")
    (pgmux.dir / "userlist.txt").write_text(
        render_userlist({"scram_user": "scram_pw", "admin": "admin", "plain_user": "plain_pw"}))
    reload_and_wait(pgmux, "config reloaded")
    with connect(pgmux, "plain_user", "plain_pw") as conn:
        assert conn.execute("select current_user").fetchone() == ("plain_user",)


def test_broken_ini_on_reload_keeps_the_old_config(pgmux_factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=5)
    with connect(pgmux, autocommit=True) as conn:
        pgmux.settings["default_pool_size"] = "lots"
        reload_and_wait(pgmux, "reload failed")
        assert config_value(pgmux, "default_pool_size") == "5"
        error = next(line for line in pgmux.log().splitlines() if "reload failed" in line)
        lines = pgmux.ini_path.read_text().splitlines()
        line = lines.index("default_pool_size = lots") + 1
        assert f"pgbouncer.ini line {line}: default_pool_size:" in error
        assert "'lots'" in error and "keeping the old config" in error
        assert conn.execute("select 1").fetchone() == (1,)
        # Once mended, the next reload goes through.
        pgmux.settings["default_pool_size"] = 6
        reload_and_wait(pgmux, "config reloaded")
        assert config_value(pgmux, "default_pool_size") == "6"


def test_broken_auth_file_on_reload_keeps_the_old_config(pgmux_factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=5)
    (pgmux.dir / "userlist.txt").write_text('"scram_user" "scram_pw"\n"admin" admin\n')
    pgmux.settings["default_pool_size"] = 8
    reload_and_wait(pgmux, "reload failed")
    assert "userlist.txt line 2" in pgmux.log()
    assert config_value(pgmux, "default_pool_size") == "5"
    with connect(pgmux, autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_reload_leaves_settings_that_need_a_restart(pgmux_factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction")
    port = pgmux.port
    pgmux.settings["listen_port"] = port + 1
    pgmux.settings["default_pool_size"] = 4
    reload_and_wait(pgmux, "config reloaded")
    assert "'listen_port' changed; it takes effect only after a restart" in pgmux.log()
    # SHOW CONFIG tells what is in force: the old port, which is still the one listening.
    assert config_value(pgmux, "listen_port") == str(port)
    assert config_value(pgmux, "default_pool_size") == "4"


def test_reload_reads_the_file_conffile_names(pgmux_factory) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=5)
    other = pgmux.dir / "other.ini"
    pgmux.settings["default_pool_size"] = 11
    pgmux.write_config()
    other.write_text(pgmux.ini_path.read_text())
    pgmux.settings["default_pool_size"] = 5
    pgmux.settings["conffile"] = str(other)
    reload_and_wait(pgmux, "config reloaded")  # reads pgbouncer.ini, which names other.ini
    reload_and_wait(pgmux, "config reloaded")  # reads other.ini
    assert config_value(pgmux, "default_pool_size") == "11"
    assert config_value(pgmux, "conffile") == str(other)


# -- SIGTERM / SIGINT ------------------------------------------------------------------------


def refused(pgmux: PgmuxProcess) -> bool:
    try:
        socket.create_connection((pgmux.host, pgmux.port), timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_shutdown_lets_an_open_transaction_commit(pgmux_factory, pg, table, signum) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=1, shutdown_timeout=20)
    with connect(pgmux) as busy, connect(pgmux, autocommit=True) as idle, \
            connect(pgmux, autocommit=True) as queued, ThreadPoolExecutor(1) as executor:
        idle.execute("select 1")
        busy.execute("insert into lifecycle values ('first')")
        waiting = executor.submit(lambda: queued.execute("select 1"))  # behind busy
        time.sleep(0.3)
        pgmux.signal(signum)
        started = time.monotonic()
        wait_until(lambda: refused(pgmux))
        with pytest.raises(psycopg.OperationalError):
            connect(pgmux, connect_timeout=2)
        with pytest.raises(psycopg.OperationalError):
            connect(pgmux, host=str(pgmux.dir), connect_timeout=2)  # the unix socket
        # Clients between transactions, or still waiting for a server, are told why they go.
        with pytest.raises(psycopg.OperationalError) as excinfo:
            idle.execute("select 1")
        assert excinfo.value.sqlstate == "57P01"
        with pytest.raises(psycopg.OperationalError) as excinfo:
            waiting.result(timeout=5)
        assert excinfo.value.sqlstate == "57P01"

        time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
        busy.execute("insert into lifecycle values ('second')")
        busy.commit()
        # The transaction is over: no new one starts on a pooler that is going away.
        with pytest.raises(psycopg.OperationalError):
            busy.execute("insert into lifecycle values ('third')")
    assert pgmux.wait(timeout=10) == 0  # well before shutdown_timeout
    assert committed_steps(pg) == ["first", "second"]
    assert "shutting down" in pgmux.log()


def test_shutdown_cuts_an_endless_transaction_after_shutdown_timeout(
    pgmux_factory, pg, table
) -> None:
    pgmux = pgmux_factory(pool_mode="session", shutdown_timeout=2)
    with connect_closing(pgmux) as stuck:
        stuck.execute("insert into lifecycle values ('never')")
        pgmux.signal(signal.SIGTERM)
        started = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            pgmux.wait(timeout=1.5)
        assert pgmux.wait(timeout=5) == 0
        elapsed = time.monotonic() - started
        assert 1.5 <= elapsed < 8, elapsed  # generous: CI machines can be loaded
        with pytest.raises(psycopg.OperationalError):
            stuck.execute("insert into lifecycle values ('late')")
    assert "shutdown_timeout reached" in pgmux.log()
    assert committed_steps(pg) == []


def test_second_signal_forces_the_end(pgmux_factory, table) -> None:
    pgmux = pgmux_factory(pool_mode="session", shutdown_timeout=30)
    with connect_closing(pgmux) as stuck:
        stuck.execute("insert into lifecycle values ('never')")
        pgmux.signal(signal.SIGTERM)
        time.sleep(0.3)
        pgmux.signal(signal.SIGINT)
        assert pgmux.wait(timeout=5) == 0
