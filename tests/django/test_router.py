"""The router with two real streaming replicas (pg_basebackup -R) and one dead one.

The scenarios are in cases/case_router.py; they run in the example project, in a subprocess.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django_support import DB, DjangoEnv, start_pgmux

from pgmux.testing import PostgresCluster, free_port


@pytest.fixture(scope="module")
def replicas(django_env: DjangoEnv) -> Iterator[list[PostgresCluster]]:
    started: list[PostgresCluster] = []
    try:
        for _ in range(2):
            started.append(django_env.cluster.start_replica())
        yield started
    finally:
        for replica in started:
            replica.stop()


def test_router_with_streaming_replicas(
    django_env: DjangoEnv, replicas: list[PostgresCluster]
) -> None:
    primary = django_env.cluster
    databases = {DB: f"host={primary.host} port={primary.port} dbname={DB}"}
    for n, replica in enumerate(replicas, 1):
        databases[f"{DB}_r{n}"] = f"host={replica.host} port={replica.port} dbname={DB}"
    databases[f"{DB}_dead"] = f"host=127.0.0.1 port={free_port()} dbname={DB}"
    pgmux = start_pgmux(primary, databases)
    try:
        urls = " ".join(django_env.url(pgmux, name) for name in databases if name != DB)
        env = django_env.env(
            DJANGOAPP_DATABASE_URL=django_env.url(pgmux),
            DJANGOAPP_REPLICA_URLS=urls,
            DJANGOAPP_READ_YOUR_WRITES_SECONDS="2",
            DJANGOAPP_REPLICA_CHECK_INTERVAL="60",
            CASE_REPLICA_DSNS="|".join(r.dsn() for r in replicas),
        )
        result = django_env.run("-m", "unittest", "-v", "cases.case_router", env=env)
    finally:
        pgmux.stop()
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "Ran 8 tests" in result.stderr, result.stderr[-3000:]
