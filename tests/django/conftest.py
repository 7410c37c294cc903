"""Fixtures for the Django tests: PostgreSQL, pgmux in transaction mode, the example project.

See django_support.py for why Django only ever runs in subprocesses here. The cluster is this
package's own, not the suite-wide ``pg``: the router tests attach streaming replicas to it, and
it logs every statement so that query tags can be checked.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django_support import APP, DB, DjangoEnv, start_pgmux

from pgmux.testing import PostgresCluster


@pytest.fixture(scope="session")
def django_cluster() -> Iterator[PostgresCluster]:
    with PostgresCluster(settings={"log_statement": "all"}) as cluster:
        cluster.add_user(APP[0], APP[1])
        cluster.psql(f"ALTER ROLE {APP[0]} CREATEDB")
        cluster.create_database(DB, owner=APP[0])
        yield cluster


@pytest.fixture(scope="session")
def django_env(django_cluster: PostgresCluster) -> Iterator[DjangoEnv]:
    """The example project migrated and seeded through pgmux (transaction mode, pool of 5)."""
    pgmux = start_pgmux(django_cluster)
    env = DjangoEnv(django_cluster, pgmux)
    try:
        for command in (
            ["migrate", "--verbosity", "0"],
            ["seed", "--products", "200", "--customers", "50", "--orders", "50"],
        ):
            result = env.run(*command)
            assert result.returncode == 0, result.stderr
        yield env
    finally:
        pgmux.stop()
