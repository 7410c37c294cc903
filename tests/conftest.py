"""Fixtures shared by the whole suite: one throwaway PostgreSQL server per test session.

``pg`` is a started ``PostgresCluster`` with a database ``app`` (owned by ``scram_user``) and one
role per pg_hba method, so that tests can exercise every way a server may ask for a password.
``pg_passwords`` maps each role to its password. The server is stopped and its directory
removed at the end of the session, or by the cluster's atexit handler and watchdog if the run
dies first.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from pgmux.testing import PostgresCluster


@dataclass(frozen=True)
class Role:
    """A login role of the ``pg`` cluster and how pg_hba makes it authenticate over TCP."""

    name: str
    password: str | None
    method: str


ROLES: tuple[Role, ...] = (
    Role("scram_user", "scram_pw", "scram-sha-256"),
    Role("md5_user", "md5_pw", "md5"),  # stored as an md5 hash, so md5 auth really works
    Role("plain_user", "plain_pw", "password"),  # cleartext on the wire
    Role("trust_user", None, "trust"),
)
APP_DB = "app"


@pytest.fixture(scope="session")
def pg_passwords() -> dict[str, str | None]:
    return {role.name: role.password for role in ROLES}


@pytest.fixture(scope="session")
def pg() -> Iterator[PostgresCluster]:
    with PostgresCluster() as cluster:
        for role in ROLES:
            cluster.add_user(role.name, role.password, method=role.method)
        cluster.create_database(APP_DB, owner="scram_user")
        grantees = ", ".join(role.name for role in ROLES)
        # Since PostgreSQL 15 only the database owner may create objects in schema public.
        cluster.psql(
            f"GRANT CONNECT ON DATABASE {APP_DB} TO {grantees};\n"
            f"GRANT ALL ON SCHEMA public TO {grantees};\n",
            dbname=APP_DB,
        )
        yield cluster
