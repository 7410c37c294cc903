"""Session state in transaction mode never reaches another client (session_state = pin).

Two clients share a pool of one server connection. What the first leaves on the session (a
SET, a LISTEN, a session advisory lock, a temporary table) keeps that connection for it; the
second client waits, and when the first disconnects it gets the same backend, reset.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import ClientCursor, errors

from pgmux.testing.pooler import PgmuxProcess

STATE = {
    "set": "SET search_path = pg_catalog",
    "listen": "LISTEN pin_channel",
    "advisory_lock": "SELECT pg_advisory_lock(4242)",
    "temp_table": "CREATE TEMP TABLE pin_tmp (x int)",
}
LEFT_BEHIND = (
    "SELECT current_setting('search_path'), "
    "(SELECT count(*) FROM pg_listening_channels()), "
    "(SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()), "
    "to_regclass('pg_temp.pin_tmp') IS NOT NULL, pg_backend_pid()"
)


def connect(pgmux: PgmuxProcess) -> psycopg.Connection[Any]:
    return psycopg.connect(pgmux.dsn("scram_user", "scram_pw"), autocommit=True)


def in_thread(work: Callable[[], object]) -> tuple[threading.Thread, dict[str, object]]:
    result: dict[str, object] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except Exception as exc:  # reported to the test through the dict
            result["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def pinned_reasons(pgmux: PgmuxProcess) -> list[str]:
    with psycopg.connect(pgmux.dsn("admin", "admin", "pgmux"), autocommit=True) as admin:
        cursor = ClientCursor(admin)
        cursor.execute("SHOW CLIENTS")
        names = [column.name for column in cursor.description or ()]
        return [dict(zip(names, row, strict=True))["pinned"] for row in cursor.fetchall()]


@pytest.fixture
def pool_of_one(pgmux_factory: Callable[..., PgmuxProcess]) -> PgmuxProcess:
    return pgmux_factory(pool_mode="transaction", default_pool_size=1, query_wait_timeout=20)


@pytest.mark.parametrize("reason", list(STATE))
def test_session_state_never_reaches_the_next_client(
    pool_of_one: PgmuxProcess, reason: str
) -> None:
    a = connect(pool_of_one)
    a.execute(STATE[reason])
    a_pid = a.execute("SELECT pg_backend_pid()").fetchone()
    assert reason in pinned_reasons(pool_of_one)

    def other_client() -> object:
        with connect(pool_of_one) as b:
            return b.execute(LEFT_BEHIND).fetchone()

    thread, result = in_thread(other_client)
    time.sleep(1.0)
    assert "value" not in result, "the pinned server connection went to another client"
    a.close()
    thread.join(20)
    assert "error" not in result, result
    search_path, listening, locks, temp_table, pid = result["value"]  # type: ignore[misc]
    assert (pid,) == a_pid  # the very backend the first client used...
    assert (search_path, listening, locks, temp_table) == ('"$user", public', 0, 0, False)


def test_releasing_the_state_unpins(pool_of_one: PgmuxProcess) -> None:
    with connect(pool_of_one) as a:
        a.execute("LISTEN pin_channel")
        assert "listen" in pinned_reasons(pool_of_one)
        a.execute("UNLISTEN *")
        assert "listen" not in pinned_reasons(pool_of_one)
        # The first client is still connected, and the second is served all the same.
        with connect(pool_of_one) as b:
            assert b.execute("SELECT 1").fetchone() == (1,)


# A state, then a release that does not take effect: pgmux sees the releasing statement, so it
# unpins, and must still hand the server on clean.
RELEASES_THAT_DO_NOT_TAKE = {
    "set, RESET ALL rolled back": ("set", ["BEGIN", "RESET ALL", "ROLLBACK"]),
    "listen, UNLISTEN rolled back": ("listen", ["BEGIN", "UNLISTEN *", "ROLLBACK"]),
    "lock, unlock after an error": (
        "advisory_lock",
        ["SELECT 1 / 0; SELECT pg_advisory_unlock_all()"],
    ),
    "temp table, DISCARD TEMP rolled back": ("temp_table", ["BEGIN", "DISCARD TEMP", "ROLLBACK"]),
    "set, RESET ALL parsed but never executed": ("set", []),
}


@pytest.mark.parametrize("case", list(RELEASES_THAT_DO_NOT_TAKE))
def test_a_release_that_does_not_take_effect_still_leaves_the_next_client_clean(
    pool_of_one: PgmuxProcess, case: str
) -> None:
    reason, releases = RELEASES_THAT_DO_NOT_TAKE[case]
    with connect(pool_of_one) as a:
        a.execute(STATE[reason])
        assert reason in pinned_reasons(pool_of_one)
        for statement in releases:
            if "1 / 0" in statement:
                with pytest.raises(errors.DivisionByZero):  # the release after it never runs
                    a.execute(statement)
            else:
                a.execute(statement)
        if not releases:  # PQprepare: Parse and Sync, no Execute
            assert a.pgconn.prepare(b"", b"RESET ALL").status == psycopg.pq.ExecStatus.COMMAND_OK
        assert reason not in pinned_reasons(pool_of_one)  # pgmux took it as released
        # The first client is still connected; the second gets the same backend, reset.
        with connect(pool_of_one) as b:
            left = b.execute(LEFT_BEHIND).fetchone()
        assert left is not None and left[:4] == ('"$user", public', 0, 0, False), left


def test_session_state_error_refuses_the_statement(
    pgmux_factory: Callable[..., PgmuxProcess],
) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=1, session_state="error")
    with connect(pgmux) as conn:
        with pytest.raises(errors.FeatureNotSupported) as refused:
            conn.execute("SET search_path = pg_catalog")
        assert "transaction pooling mode" in str(refused.value)
        # An ERROR, not FATAL: the session goes on, and nothing was changed.
        assert conn.execute("SHOW search_path").fetchone() == ('"$user", public',)


def test_session_state_allow_is_pgbouncers_behaviour(
    pgmux_factory: Callable[..., PgmuxProcess],
) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=1, session_state="allow")
    with connect(pgmux) as a, connect(pgmux) as b:
        a.execute("SET search_path = pg_catalog")
        # Not pinned: the next client gets the same server, with the setting left on it.
        assert b.execute("SHOW search_path").fetchone() == ("pg_catalog",)
