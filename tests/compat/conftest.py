"""Fixtures of the compatibility tests: one pgmux per pool mode, shared by the whole package.

Both pgmux processes have pools of ``POOL_SIZE`` server connections, fewer than the clients
of any row, so that clients queue for servers in both modes. ``direct`` is the same database
reached without pgmux: what every row's results are compared with.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

from .render_matrix import POOL_SIZE
from .workloads import Target

USER, PASSWORD = "scram_user", "scram_pw"
ADMIN = ("admin", "admin")


def start_pgmux(
    pg: PostgresCluster, passwords: dict[str, str | None], **settings: object
) -> PgmuxProcess:
    userlist = {user: pw for user, pw in passwords.items() if pw is not None}
    userlist[ADMIN[0]] = ADMIN[1]
    merged: dict[str, object] = {
        "auth_type": "scram-sha-256",
        "admin_users": ADMIN[0],
        "max_client_conn": 300,
        "default_pool_size": POOL_SIZE,
    }
    merged.update(settings)
    target = f"host={pg.host} port={pg.port}"
    databases = {"app": f"{target} dbname=app", "*": target}
    return PgmuxProcess(databases, merged, userlist=userlist).start()


def target_of(pgmux: PgmuxProcess) -> Target:
    return Target(pgmux.host, pgmux.port, USER, PASSWORD)


def server_count(pgmux: PgmuxProcess, dbname: str) -> int:
    """Server connections pgmux holds now to ``dbname`` (its admin console's SHOW SERVERS)."""
    dsn = pgmux.dsn(ADMIN[0], ADMIN[1], dbname="pgbouncer")
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as admin:
        cur = admin.execute("SHOW SERVERS")
        column = [c.name for c in cur.description or ()].index("database")
        return sum(1 for row in cur.fetchall() if row[column] == dbname)


def on_every_server(pgmux: PgmuxProcess, dbname: str, sql: str) -> list[Any]:
    """Run ``sql`` on each of the pool's ``POOL_SIZE`` server connections.

    As many clients each open a transaction and keep it while the next one runs, so each gets
    a server of its own; the rows of all of them are returned.
    """
    rows: list[Any] = []
    conns = [
        psycopg.connect(pgmux.dsn(USER, PASSWORD, dbname=dbname), prepare_threshold=None)
        for _ in range(POOL_SIZE)
    ]
    try:
        for conn in conns:
            cur = conn.execute(sql)
            rows += cur.fetchall() if cur.description is not None else []
    finally:
        for conn in conns:
            conn.commit()
            conn.close()
    return rows


@contextmanager
def watchdog(pgmux: PgmuxProcess, seconds: float, *, fail: bool = True) -> Iterator[None]:
    """Kill pgmux if the block runs longer than ``seconds`` (and then fail, if ``fail``).

    A client waiting for a reply that pgmux lost waits forever (libpq has no timeout of its
    own); once pgmux is gone, every client's socket closes and its library raises.
    """
    fired = threading.Event()

    def fire() -> None:
        fired.set()
        print(f"watchdog: clients hung for {seconds:g} s, killing pgmux", file=sys.stderr)
        if pgmux.process is not None:
            pgmux.process.kill()

    timer = threading.Timer(seconds, fire)
    timer.daemon = True
    timer.start()
    try:
        yield
    except BaseException as error:
        if fail and fired.is_set():
            pytest.fail(f"clients hung for {seconds:g} s; pgmux was killed to end them: {error!r}")
        raise
    finally:
        timer.cancel()
    if fail and fired.is_set():
        pytest.fail(f"clients hung for {seconds:g} s; pgmux was killed to end them")


@pytest.fixture(scope="package")
def direct(pg: PostgresCluster) -> Target:
    return Target(pg.host, pg.port, USER, PASSWORD)


@pytest.fixture(scope="package")
def pgmux_for(
    pg: PostgresCluster, pg_passwords: dict[str, str | None]
) -> Iterator[Callable[[str], PgmuxProcess]]:
    """The package's pgmux in ``mode`` (transaction or session), started on first use (and
    again if a watchdog killed it)."""
    started: dict[str, PgmuxProcess] = {}

    def get(mode: str) -> PgmuxProcess:
        process = started.get(mode)
        if process is None or process.process is None or process.process.poll() is not None:
            started[mode] = start_pgmux(pg, pg_passwords, pool_mode=mode)
        return started[mode]

    yield get
    for process in started.values():
        process.stop()


@pytest.fixture
def new_pgmux(
    pg: PostgresCluster, pg_passwords: dict[str, str | None]
) -> Iterator[Callable[..., PgmuxProcess]]:
    """A pgmux of the test's own, with the given [pgbouncer] settings; stopped afterwards."""
    started: list[PgmuxProcess] = []

    def start(**settings: object) -> PgmuxProcess:
        started.append(start_pgmux(pg, pg_passwords, **settings))
        return started[-1]

    yield start
    for process in started:
        process.stop()
