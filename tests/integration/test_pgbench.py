"""pgbench through pgmux in transaction mode: 100 clients on 20 server connections, no failures.

The pgbench tables live in their own database, initialised on the cluster directly. While each
run goes on, a sampler on the cluster counts the backends of that database: pgmux must never
have more than ``default_pool_size`` of them, however many clients pgbench opens.
"""

from __future__ import annotations

import os
import re
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import pytest

from pgmux.testing import PostgresCluster

pytestmark = pytest.mark.slow

BENCH_DB = "pgbench_mux"
BENCH_USER, BENCH_PASSWORD = "md5_user", "md5_pw"
POOL_SIZE = 20


@pytest.fixture(scope="module")
def bench_db(pg: PostgresCluster) -> str:
    pg.create_database(BENCH_DB, owner=BENCH_USER)
    subprocess.run(
        ["pgbench", "-i", "-s", "1", "-q", "-h", pg.socket_dir, "-p", str(pg.port),
         "-U", BENCH_USER, BENCH_DB],
        check=True, capture_output=True, timeout=60, env=_env(),
    )
    return BENCH_DB


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["PGPASSWORD"] = BENCH_PASSWORD
    return env


@contextmanager
def backends_sampled(pg: PostgresCluster, dbname: str) -> Iterator[list[int]]:
    """Count ``dbname``'s backends every 20 ms while the block runs; yields the counts."""
    counts: list[int] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def sample() -> None:
        try:
            with psycopg.connect(pg.dsn(host=pg.socket_dir), autocommit=True) as conn:
                while not done.is_set():
                    row = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                                       [dbname]).fetchone()
                    counts.append(row[0] if row else 0)
                    done.wait(0.02)
        except BaseException as exc:  # surfaced in the test, not lost in the thread
            errors.append(exc)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield counts
    finally:
        done.set()
        thread.join(timeout=5)
    assert not errors, errors


def run_pgbench(pgmux, *args: str) -> tuple[int, int, str]:
    """Run pgbench through pgmux; return (transactions processed, failed ones, its report)."""
    result = subprocess.run(
        ["pgbench", "-n", "-h", pgmux.host, "-p", str(pgmux.port), "-U", BENCH_USER, *args,
         BENCH_DB],
        capture_output=True, text=True, timeout=60, env=_env(),
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, f"{report}\n{pgmux.output()[-3000:]}"
    processed = re.search(r"number of transactions actually processed: (\d+)", report)
    failed = re.search(r"number of failed transactions: (\d+)", report)
    assert processed and failed, report
    return int(processed.group(1)), int(failed.group(1)), report


# pgbench's -T clock starts before its clients connect, and SCRAM costs 4096 PBKDF2 rounds on
# each end of every login: on a loaded machine 100 SCRAM logins can eat the whole run, so these
# runs log in with md5, which also keeps -C (a login per transaction) cheap.
@pytest.mark.parametrize("args", [
    ("-S", "-c", "100", "-j", "2", "-T", "3"),
    ("-c", "100", "-j", "2", "-T", "3"),
    ("-S", "-C", "-c", "100", "-j", "2", "-T", "3"),
], ids=["select-only", "tpcb", "select-only-connect-per-transaction"])
def test_pgbench_through_transaction_pooling(
    pgmux_factory, pg, bench_db, args: tuple[str, ...]
) -> None:
    pgmux = pgmux_factory(pool_mode="transaction", default_pool_size=POOL_SIZE,
                          max_client_conn=200, auth_type="md5")
    with backends_sampled(pg, bench_db) as counts:
        processed, failed, report = run_pgbench(pgmux, *args)
    assert failed == 0, report
    assert processed > 0, f"{report}\n{pgmux.output()[-3000:]}"
    assert counts and max(counts) > 0, "the sampler saw no backend at all"
    assert max(counts) <= POOL_SIZE, f"up to {max(counts)} backends for {POOL_SIZE} allowed"
