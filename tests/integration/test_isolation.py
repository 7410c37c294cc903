"""Clients that share one server connection must not see each other's session settings.

With ``default_pool_size=1`` in transaction mode, two clients take turns on the same PostgreSQL
backend (``pg_backend_pid()`` proves it). Whatever one of them SETs among the tracked parameters
(application_name, TimeZone, DateStyle, IntervalStyle, client_encoding) must follow that client
onto the server and be undone for the other, as checked with SHOW, ``current_setting()`` and the
settings' visible effects on output. Statement mode must refuse a transaction block outright.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import errors

from pgmux.testing.pooler import PgmuxProcess

USER, PASSWORD = "scram_user", "scram_pw"
NAMES = ("application_name", "TimeZone", "DateStyle", "IntervalStyle", "client_encoding")
A_VALUES = {
    "application_name": "a",
    "TimeZone": "Asia/Tokyo",
    "DateStyle": "SQL, DMY",
    "IntervalStyle": "postgres_verbose",
    "client_encoding": "LATIN1",
}
# How each A_VALUES setting shows in output (B's startup values give the ISO forms).
EFFECTS_SQL = (
    "select '2024-01-31'::date::text, '2024-01-01 00:00:00+00'::timestamptz::text,"
    " '1 day'::interval::text"
)
A_EFFECTS = ("31/01/2024", "01/01/2024 09:00:00 JST", "@ 1 day")
B_EFFECTS = ("2024-01-31", "2023-12-31 19:00:00-05", "1 day")


def connect(pgmux: PgmuxProcess, **kwargs: Any) -> psycopg.Connection:
    return psycopg.connect(
        pgmux.dsn(USER, PASSWORD), autocommit=True, prepare_threshold=None, **kwargs
    )


def shown(conn: psycopg.Connection) -> dict[str, str]:
    values = {}
    for name in NAMES:
        row = conn.execute(f"show {name}").fetchone()
        assert row is not None
        values[name] = row[0]
    return values


def current_settings(conn: psycopg.Connection) -> dict[str, str]:
    placeholders = ", ".join("current_setting(%s)" for _ in NAMES)
    row = conn.execute(f"select {placeholders}", NAMES).fetchone()
    assert row is not None
    return dict(zip(NAMES, row, strict=True))


def backend_pid(conn: psycopg.Connection) -> int:
    row = conn.execute("select pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


def effects(conn: psycopg.Connection) -> tuple[str, ...]:
    row = conn.execute(EFFECTS_SQL).fetchone()
    assert row is not None
    return tuple(row)


@pytest.fixture
def shared(pgmux_factory: Callable[..., PgmuxProcess]) -> PgmuxProcess:
    return pgmux_factory(pool_mode="transaction", default_pool_size=1)


def test_tracked_parameters_follow_each_client(shared: PgmuxProcess) -> None:
    with (
        connect(shared, application_name="start_b", options="-c TimeZone=America/New_York") as b,
        connect(shared, application_name="start_a") as a,
    ):
        b_before = shown(b)
        assert b_before["application_name"] == "start_b"
        assert b_before["TimeZone"] == "America/New_York"
        assert effects(b) == B_EFFECTS
        assert all(b_before[name] != value for name, value in A_VALUES.items())

        a.execute("set application_name = 'a'")
        a.execute("set TimeZone = 'Asia/Tokyo'")
        a.execute("select set_config('DateStyle', 'SQL, DMY', false)")
        a.execute("set IntervalStyle to postgres_verbose; set client_encoding = 'LATIN1'")
        assert backend_pid(a) == backend_pid(b)  # one backend, taking turns

        for _ in range(3):  # every hand-over must switch the settings both ways
            assert shown(b) == b_before
            assert current_settings(b) == b_before
            assert effects(b) == B_EFFECTS
            assert shown(a) == A_VALUES
            assert current_settings(a) == A_VALUES
            assert effects(a) == A_EFFECTS
        assert a.info.encoding == "iso8859-1" and b.info.encoding == "utf-8"
        assert a.execute("select %s::text", ("café",)).fetchone() == ("café",)
        assert backend_pid(a) == backend_pid(b)


def test_local_and_rolled_back_settings_are_undone(shared: PgmuxProcess) -> None:
    with connect(shared, application_name="start_b") as b, connect(shared) as a:
        a.execute("set application_name = 'a'")
        with a.transaction():
            a.execute("set local application_name = 'a_local'")
            a.execute("set local TimeZone = 'Asia/Tokyo'")
            assert shown(a)["application_name"] == "a_local"
        assert shown(b)["application_name"] == "start_b"
        assert shown(a)["application_name"] == "a"
        with pytest.raises(errors.DivisionByZero), a.transaction():
            a.execute("set application_name = 'a_rolled_back'")
            a.execute("select 1 / 0")
        assert shown(b)["application_name"] == "start_b"
        assert current_settings(a)["application_name"] == "a"
        assert shown(b)["TimeZone"] == shown(a)["TimeZone"] != "Asia/Tokyo"
        assert backend_pid(a) == backend_pid(b)


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_new_client_gets_defaults_not_the_last_clients(
    pgmux_factory: Callable[..., PgmuxProcess], mode: str
) -> None:
    shared = pgmux_factory(pool_mode=mode, default_pool_size=1)
    with connect(shared) as first:
        defaults = shown(first)
        first_pid = backend_pid(first)
        first.execute("set application_name = 'gone'; set TimeZone = 'Asia/Tokyo'")
    with connect(shared) as second:  # same backend, left as the first client set it
        assert backend_pid(second) == first_pid
        assert shown(second) == defaults
        assert current_settings(second) == defaults


def test_startup_settings_that_are_not_reported_follow_their_client(
    shared: PgmuxProcess,
) -> None:
    # statement_timeout is not GUC_REPORT: pgmux applies it from the startup packet itself.
    with (
        connect(shared, options="-c statement_timeout=1234 -c search_path=b_schema") as b,
        connect(shared) as a,
    ):
        for _ in range(2):
            assert b.execute("show statement_timeout").fetchone() == ("1234ms",)
            assert b.execute("show search_path").fetchone() == ("b_schema",)
            assert a.execute("show statement_timeout").fetchone() == ("0",)
            assert a.execute("show search_path").fetchone() == ('"$user", public',)
        assert backend_pid(a) == backend_pid(b)


@pytest.mark.parametrize("app_name", ["b\\path", "b\\"])
def test_values_survive_standard_conforming_strings_off(
    shared: PgmuxProcess, app_name: str
) -> None:
    with connect(shared, application_name=app_name) as b, connect(shared) as a:
        b_before = shown(b)
        a.execute("set standard_conforming_strings = off")
        a.execute("set application_name = 'a'; set TimeZone = 'Asia/Tokyo'")
        assert shown(b) == b_before
        assert b_before["application_name"] == app_name
        assert backend_pid(a) == backend_pid(b)


def test_statement_mode_refuses_begin(pgmux_factory: Callable[..., PgmuxProcess]) -> None:
    pgmux = pgmux_factory(pool_mode="statement", default_pool_size=1)
    with connect(pgmux) as conn:
        with pytest.raises(errors.ActiveSqlTransaction) as refused:
            conn.execute("begin")
        assert refused.value.sqlstate == "25001"
        assert "statement pooling mode" in str(refused.value)
        assert conn.closed or conn.broken
        with pytest.raises(psycopg.OperationalError):
            conn.execute("select 1")
    # A driver that opens the transaction itself gets the refusal on its first statement.
    with (
        psycopg.connect(pgmux.dsn(USER, PASSWORD), prepare_threshold=None) as conn,
        pytest.raises(errors.ActiveSqlTransaction),
    ):
        conn.execute("select 1")


def test_statement_mode_refused_server_is_not_reused(
    pgmux_factory: Callable[..., PgmuxProcess],
) -> None:
    pgmux = pgmux_factory(pool_mode="statement", default_pool_size=1)
    with connect(pgmux) as conn:
        refused_pid = backend_pid(conn)
        with pytest.raises(errors.ActiveSqlTransaction):
            conn.execute("begin")
    # The server connection left inside that transaction block is closed, not handed on.
    with connect(pgmux) as other:
        assert backend_pid(other) != refused_pid
        row = other.execute("select now() = statement_timestamp()").fetchone()
        assert row == (True,)  # autocommit: a fresh transaction for each statement
        assert other.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
