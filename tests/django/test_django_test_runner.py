"""Django's test runner through pgmux in transaction mode, teardown included.

``manage.py test`` creates ``test_<NAME>`` (CREATE DATABASE), migrates it, and with
``--parallel N`` clones it N times (CREATE DATABASE ... TEMPLATE test_<NAME>) before dropping
them all at the end. PostgreSQL refuses the clone and the drop while any session is connected
to that database, and pgmux holds idle server connections to it by design: pgmux must close
its own first. ``--keepdb`` keeps the databases and must find them again on the next run.

The project is tests/django/testproject (run in a subprocess, so that this process never
configures Django). Its database role has CREATEDB and reaches every ``test_*`` database
through the ``*`` entry of pgmux's [databases]. What is left behind is checked in pg_database
directly, not through pgmux.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

PROJECT = Path(__file__).resolve().parent / "testproject"
ROLE, PASSWORD = "django_runner", "runner_pw"
NAME = "rtproject"
TEST_DB = f"test_{NAME}"
CLONES = {f"{TEST_DB}_1", f"{TEST_DB}_2"}
TESTS_IN_PROJECT = 12


@pytest.fixture(scope="module")
def runner_role(pg: PostgresCluster) -> str:
    """A role that may create databases (as Django's test runner must), not a superuser."""
    pg.add_user(ROLE, PASSWORD)
    pg.psql(f"ALTER ROLE {ROLE} CREATEDB;\n")
    return ROLE


def databases(pg: PostgresCluster) -> set[str]:
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        rows = conn.execute(r"select datname from pg_database where datname like 'test\_%'")
        return {row[0] for row in rows}


def drop_test_databases(pg: PostgresCluster) -> None:
    with psycopg.connect(pg.dsn("postgres"), autocommit=True) as conn:
        for name in databases(pg):
            if name.startswith(TEST_DB):
                conn.execute(f'drop database "{name}" with (force)')


@pytest.fixture
def clean(pg: PostgresCluster, runner_role: str) -> Iterator[None]:
    """No test database of this project before the test, whatever a failed one left."""
    drop_test_databases(pg)
    yield
    drop_test_databases(pg)


@pytest.fixture
def pgmux(pgmux_factory: Callable[..., PgmuxProcess], runner_role: str) -> PgmuxProcess:
    # The factory's default [databases]: an ``app`` entry and the ``*`` fallback.
    return pgmux_factory(
        pool_mode="transaction",
        default_pool_size=4,
        query_wait_timeout=20,
        userlist={runner_role: PASSWORD},
    )


def manage_test(
    pgmux: PgmuxProcess, trace_dir: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DJANGO"))}
    env.update(
        DJANGO_SETTINGS_MODULE="rtproject.settings",
        PYTHONPATH=str(PROJECT),
        PYTHONWARNINGS="error",  # as pytest's filterwarnings = error, inside the project
        RTPROJECT_DB_HOST=pgmux.host,
        RTPROJECT_DB_PORT=str(pgmux.port),
        RTPROJECT_DB_USER=ROLE,
        RTPROJECT_DB_PASSWORD=PASSWORD,
        RTPROJECT_DB_NAME=NAME,
        RTPROJECT_TRACE_DIR=str(trace_dir),
    )
    trace_dir.mkdir(exist_ok=True)
    for old in trace_dir.iterdir():
        old.unlink()
    return subprocess.run(
        [sys.executable, "manage.py", "test", "--noinput", "-v", "2", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_passed(result: subprocess.CompletedProcess[str], pgmux: PgmuxProcess) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{output}\n--- pgmux log ---\n{pgmux.log()[-4000:]}"
    assert f"Ran {TESTS_IN_PROJECT} tests" in result.stderr, output
    assert "\nOK" in result.stderr, output


def used_databases(trace_dir: Path) -> set[str]:
    return {line for path in trace_dir.iterdir() for line in path.read_text().split()}


def test_parallel_run_creates_clones_and_drops_everything(
    pg: PostgresCluster, pgmux: PgmuxProcess, clean: None, tmp_path: Path
) -> None:
    before = databases(pg)
    result = manage_test(pgmux, tmp_path / "trace", "--parallel", "2")
    assert_passed(result, pgmux)
    assert "Cloning test database for alias 'default'" in result.stderr
    assert "Destroying test database for alias 'default'" in result.stderr
    # Every test ran on a worker's clone, none on the template.
    used = used_databases(tmp_path / "trace")
    assert used and used <= CLONES, used
    # Teardown dropped the test database and its clones: nothing is left behind.
    assert databases(pg) == before
    # pgmux is none the worse for it.
    with psycopg.connect(pgmux.dsn(ROLE, PASSWORD, "postgres"), autocommit=True) as conn:
        assert conn.execute("select 1").fetchone() == (1,)


def test_keepdb_twice_then_a_clean_run(
    pg: PostgresCluster, pgmux: PgmuxProcess, clean: None, tmp_path: Path
) -> None:
    """Two ``--keepdb`` runs share the databases; a last plain run replaces and drops them.

    All three go through one pgmux, which keeps idle server connections to the kept databases
    between runs: the plain run's DROP DATABASE of the old ones must not trip over them.
    """
    before = databases(pg)
    trace = tmp_path / "trace"

    first = manage_test(pgmux, trace, "--keepdb", "--parallel", "2")
    assert_passed(first, pgmux)
    assert "Preserving test database for alias 'default'" in first.stderr
    kept = databases(pg) - before
    assert TEST_DB in kept and kept <= {TEST_DB} | CLONES, kept

    second = manage_test(pgmux, trace, "--keepdb", "--parallel", "2")
    assert_passed(second, pgmux)
    assert "Using existing test database for alias 'default'" in second.stderr
    assert databases(pg) - before == kept

    last = manage_test(pgmux, trace, "--parallel", "2")
    assert_passed(last, pgmux)
    assert "Destroying old test database for alias 'default'" in last.stderr
    assert databases(pg) == before
