"""Fixtures shared by the whole suite: one throwaway PostgreSQL server per test session.

``pg`` is a started ``PostgresCluster`` with a database ``app`` (owned by ``scram_user``) and one
role per pg_hba method, so that tests can exercise every way a server may ask for a password.
``pg_passwords`` maps each role to its password. The server is stopped and its directory
removed at the end of the session, or by the cluster's atexit handler and watchdog if the run
dies first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess


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


@pytest.fixture
def pgmux_factory(pg: PostgresCluster) -> Iterator[Callable[..., PgmuxProcess]]:
    """Start pgmux processes in front of ``pg``; each is stopped at the end of the test.

    ``pgmux_factory(pool_mode="transaction", default_pool_size=5)`` gives a pgmux with an ``app``
    entry and a ``*`` fallback, every ``ROLES`` password in its auth_file plus an ``admin``
    user (password "admin") in admin_users. Keyword arguments are [pgbouncer] settings;
    ``databases=`` / ``userlist=`` / ``users=`` replace those sections.
    """
    started: list[PgmuxProcess] = []

    def factory(
        *,
        databases: dict[str, str] | None = None,
        userlist: dict[str, str] | None = None,
        users: dict[str, str] | None = None,
        start: bool = True,
        **settings: object,
    ) -> PgmuxProcess:
        target = f"host={pg.host} port={pg.port}"
        if databases is None:
            databases = {APP_DB: f"{target} dbname={APP_DB}", "*": target}
        if userlist is None:
            userlist = {r.name: r.password for r in ROLES if r.password is not None}
            userlist["admin"] = "admin"
        merged: dict[str, object] = {"admin_users": "admin", "auth_type": "scram-sha-256"}
        merged.update(settings)
        process = PgmuxProcess(databases, merged, userlist=userlist, users=users)
        started.append(process)
        return process.start() if start else process

    yield factory
    for process in started:
        process.stop()
