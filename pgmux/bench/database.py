"""The throwaway PostgreSQL every target ends up at: roles, the pgbench tables, auth secrets.

Two roles log in with the same password: `bench` with a SCRAM-SHA-256 secret and `bench_md5`
with an md5 one, so each auth method is exercised on both hops. The poolers' auth_file holds
the secrets exactly as pg_authid stores them, as an operator would copy them; the poolers then
never hold a plain password.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pgmux.bench.targets import BenchError
from pgmux.bench.workloads import MD5, SCRAM
from pgmux.testing.cluster import ClusterError, PostgresCluster

DBNAME = "bench"
PASSWORD = "bench-password"
USERS = {SCRAM: "bench", MD5: "bench_md5"}  # auth_type -> role that uses it

# The cluster already runs without durability; room for the tables at -s 10 (~160 MB) keeps
# every run in memory, so that the database's disk is not what the benchmark measures.
PG_SETTINGS = {"shared_buffers": "256MB"}
INIT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Database:
    host: str
    port: int
    dbname: str
    pgbench: str
    secrets: Mapping[str, str]  # role -> secret as stored in pg_authid

    def user_for(self, auth_type: str) -> str:
        return USERS[auth_type]


def client_env() -> dict[str, str]:
    """libpq environment for pgbench: the password, and no TLS or GSS negotiation round trips."""
    env = dict(os.environ)
    env.update(PGPASSWORD=PASSWORD, PGSSLMODE="disable", PGGSSENCMODE="disable")
    return env


def find_pgbench(bindir: str | os.PathLike[str]) -> str:
    """The cluster's own pgbench if it has one, else the one on PATH."""
    beside = Path(bindir) / "pgbench"
    found = str(beside) if beside.exists() else shutil.which("pgbench")
    if found is None:
        raise BenchError("pgbench not found: apt-get install -y postgresql-contrib")
    return found


def extract_secret(psql_output: str) -> str:
    """The SCRAM or md5 secret in psql's output, whatever its format and headers."""
    for line in psql_output.splitlines():
        text = line.strip()
        if text.startswith(("SCRAM-SHA-256$", "md5")):
            return text
    raise BenchError(f"no password secret in psql output: {psql_output!r}")


@contextmanager
def bench_database(max_connections: int, scale: int) -> Iterator[Database]:
    """Start PostgreSQL, create the roles and pgbench tables; stop and remove it on exit."""
    cluster = PostgresCluster(settings=dict(PG_SETTINGS), max_connections=max_connections)
    try:
        cluster.start()
        db = _prepare(cluster, scale)
    except (ClusterError, RuntimeError) as exc:
        cluster.stop()
        raise BenchError(f"could not set up PostgreSQL: {exc}") from exc
    try:
        yield db
    finally:
        cluster.stop()


def _prepare(cluster: PostgresCluster, scale: int) -> Database:
    for method, role in USERS.items():
        cluster.add_user(role, PASSWORD, method=method)
    cluster.create_database(DBNAME, owner=USERS[SCRAM])
    pgbench = find_pgbench(cluster.bindir)
    _pgbench_init(pgbench, cluster.host, cluster.port, scale)
    cluster.psql(f"GRANT ALL ON ALL TABLES IN SCHEMA public TO {USERS[MD5]}", dbname=DBNAME)
    secrets = {
        role: extract_secret(
            cluster.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'")
        )
        for role in USERS.values()
    }
    return Database(cluster.host, cluster.port, DBNAME, pgbench, secrets)


def _pgbench_init(pgbench: str, host: str, port: int, scale: int) -> None:
    """pgbench -i: create and fill the tables, then vacuum them (timed runs use -n)."""
    argv = [pgbench, "-i", "-q", "-s", str(scale), "-h", host, "-p", str(port),
            "-U", USERS[SCRAM], DBNAME]  # fmt: skip
    done = subprocess.run(
        argv, capture_output=True, text=True, env=client_env(), timeout=INIT_TIMEOUT_S, check=False
    )
    if done.returncode != 0:
        raise BenchError(f"pgbench -i failed:\n{done.stderr.strip()}")
