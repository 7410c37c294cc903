"""The client compatibility matrix: each row of render_matrix.ROWS in transaction and session mode.

A row runs its clients once directly against PostgreSQL and once through pgmux, each time on
freshly reset data, and the two runs must see exactly the same results. The direct run is made
once per row and shared by both modes. pgbench is the exception to "exactly": its numbers are
compared as pgbench reports them (transactions processed, failed) plus the TPC-B invariant that
the account, teller and branch balances and the history all add up to the same total.

The last tests keep docs/compatibility.md honest: it must be what render_matrix.py makes of the
rows, and the rows must be exactly the runners defined here.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

from . import workloads as w
from .conftest import PASSWORD, USER, on_every_server, server_count, target_of, watchdog
from .render_matrix import BUG, DOC, MODES, POOL_SIZE, ROWS, WORKS, Row, render
from .workloads import Target

BENCH_DB = "compat_bench"
ROW_BY_ID = {row.id: row for row in ROWS}


class Context:
    """What a runner may need besides its target."""

    def __init__(self, direct: Target, workdir: Path, pg: PostgresCluster) -> None:
        self.direct = direct
        self.workdir = workdir
        self.pg = pg


Runner = Callable[[Target, Context, int], Any]


def _django(disable: bool, in_atomic: bool, prepare_threshold: int | None = 5) -> Runner:
    options = {} if prepare_threshold is None else {"prepare_threshold": prepare_threshold}
    return lambda t, ctx, n: w.django_orm(
        t,
        n,
        ctx.direct,
        options=options,
        disable_server_side_cursors=disable,
        iterate_in_atomic=in_atomic,
    )


def _pgbench(mode: str) -> Runner:
    return lambda t, ctx, n: run_pgbench(ctx, t, mode, n)


RUNNERS: dict[str, Runner] = {
    "psycopg-sync-default": lambda t, ctx, n: w.psycopg_sync(t, n),
    "psycopg-sync-prepare": lambda t, ctx, n: w.psycopg_sync(t, n, prepare=True),
    "psycopg-sync-pipeline": lambda t, ctx, n: w.psycopg_sync(t, n, pipeline=True),
    "psycopg-async-default": lambda t, ctx, n: w.psycopg_async(t, n),
    "psycopg-async-prepare": lambda t, ctx, n: w.psycopg_async(t, n, prepare=True),
    "psycopg-async-pipeline": lambda t, ctx, n: w.psycopg_async(t, n, pipeline=True),
    "asyncpg-default": lambda t, ctx, n: w.asyncpg_default(t, n),
    "pgbench-simple": _pgbench("simple"),
    "pgbench-extended": _pgbench("extended"),
    "pgbench-prepared": _pgbench("prepared"),
    "psql": lambda t, ctx, n: w.psql(t, n, ctx.workdir),
    "django-orm-unnamed": _django(disable=True, in_atomic=False, prepare_threshold=None),
    "django-orm": _django(disable=True, in_atomic=False),
    "django-server-cursor-atomic": _django(disable=False, in_atomic=True),
    "django-server-cursor-autocommit": _django(disable=False, in_atomic=False),
    "sqlalchemy-psycopg": lambda t, ctx, n: w.sqlalchemy_psycopg(t, n),
    "sqlalchemy-asyncpg": lambda t, ctx, n: w.sqlalchemy_asyncpg(t, n),
}


def reset(row: Row, ctx: Context) -> None:
    if row.id.startswith("pgbench") or row.id.startswith("django"):
        return  # pgbench's invariant holds across runs; the Django script makes its own table
    w.reset_accounts(ctx.direct, row.clients)
    if row.id == "psql":
        w.reset_psql(ctx.direct, row.clients)


# -- pgbench -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bench_db(pg: PostgresCluster) -> str:
    pg.create_database(BENCH_DB, owner=USER)
    subprocess.run(
        [
            "pgbench",
            "-i",
            "-s",
            "1",
            "-q",
            "-h",
            pg.socket_dir,
            "-p",
            str(pg.port),
            "-U",
            USER,
            BENCH_DB,
        ],
        check=True,
        capture_output=True,
        timeout=60,
        env=_pgbench_env(),
    )
    return BENCH_DB


def _pgbench_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = PASSWORD
    return env


def run_pgbench(ctx: Context, target: Target, query_mode: str, clients: int) -> dict[str, Any]:
    # -j = -c: one thread per client, see the pgbench-prepared row's "how".
    argv = [
        "pgbench",
        "-n",
        "-M",
        query_mode,
        "-c",
        str(clients),
        "-j",
        str(clients),
        "-t",
        "10",
        "-h",
        target.host,
        "-p",
        str(target.port),
        "-U",
        USER,
        BENCH_DB,
    ]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=_pgbench_env())
    report = result.stdout + result.stderr
    processed = re.search(r"number of transactions actually processed: (\d+/\d+)", report)
    failed = re.search(r"number of failed transactions: (\d+)", report)
    with psycopg.connect(ctx.pg.dsn(BENCH_DB, USER, PASSWORD), autocommit=True) as conn:
        sums = conn.execute(
            "SELECT (SELECT sum(abalance) FROM pgbench_accounts),"
            " (SELECT sum(bbalance) FROM pgbench_branches),"
            " (SELECT sum(tbalance) FROM pgbench_tellers),"
            " (SELECT coalesce(sum(delta), 0) FROM pgbench_history)"
        ).fetchone()
    assert sums is not None
    return {
        "exit status": result.returncode,
        "processed": processed.group(1) if processed else report[-2000:],
        "failed": failed.group(1) if failed else None,
        "balances add up": len(set(sums)) == 1,
        "errors": [line for line in report.splitlines() if "error" in line.lower()],
    }


# -- the matrix ----------------------------------------------------------------------------------


def _cases() -> Iterator[Any]:
    for row in ROWS:
        for mode in MODES:
            status = row.status(mode)
            marks = []
            if status != WORKS:
                marks.append(pytest.mark.xfail(strict=True, reason=status))
            yield pytest.param(row.id, mode, id=f"{row.id}-{mode}", marks=marks)


@pytest.fixture(scope="module")
def baselines() -> dict[str, Any]:
    """Each row's results on a direct connection, computed by the first mode that needs them."""
    return {}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("compat")


@pytest.mark.parametrize(("row_id", "mode"), list(_cases()))
def test_client_matches_direct_connection(
    row_id: str,
    mode: str,
    pg: PostgresCluster,
    direct: Target,
    pgmux_for: Callable[[str], PgmuxProcess],
    new_pgmux: Callable[..., PgmuxProcess],
    baselines: dict[str, Any],
    workdir: Path,
    request: pytest.FixtureRequest,
) -> None:
    row = ROW_BY_ID[row_id]
    run = RUNNERS[row_id]
    ctx = Context(direct, workdir, pg)
    if row_id.startswith("pgbench"):
        request.getfixturevalue("bench_db")
    if row_id not in baselines:
        reset(row, ctx)
        baselines[row_id] = run(direct, ctx, row.clients)
    if row_id.startswith("pgbench") and mode == "session":
        # pgbench connects every client before it starts: session mode needs a server each.
        pgmux = new_pgmux(pool_mode="session", default_pool_size=row.clients)
    else:
        pgmux = pgmux_for(mode)
    dbname = BENCH_DB if row_id.startswith("pgbench") else "app"
    if mode == "transaction":
        on_every_server(pgmux, dbname, "DEALLOCATE ALL")  # what follows is this row's
    reset(row, ctx)
    with watchdog(pgmux, 60):
        got = run(target_of(pgmux), ctx, row.clients)
    assert got == baselines[row_id]
    if row_id.startswith("pgbench"):
        assert got["exit status"] == 0 and got["failed"] == "0" and got["balances add up"]
    if pgmux is pgmux_for(mode):
        assert server_count(pgmux, dbname) <= POOL_SIZE < row.clients
    if mode == "transaction":
        # The row's named statements (and only those rows') became pgmux's shared ones.
        names = on_every_server(pgmux, dbname, "SELECT name FROM pg_prepared_statements")
        assert bool(names) == row.named, names
        assert all(name.startswith("PGMUX_") for (name,) in names), names


# -- the published page --------------------------------------------------------------------------


def test_every_row_has_a_runner_and_every_runner_a_row() -> None:
    assert set(RUNNERS) == set(ROW_BY_ID)
    assert len(ROW_BY_ID) == len(ROWS)
    for row in ROWS:
        for mode in MODES:
            status = row.status(mode)
            assert status == WORKS or status.startswith(BUG), (row.id, mode, status)


def test_docs_compatibility_md_is_generated_from_the_rows() -> None:
    assert DOC.read_text() == render(), (
        "docs/compatibility.md is out of date: run python tests/compat/render_matrix.py"
    )
