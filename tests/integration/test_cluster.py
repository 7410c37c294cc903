"""The ``pg`` fixture and PostgresCluster: each role logs in over TCP exactly as configured.

Wrong passwords are checked with asyncpg because libpq reports no SQLSTATE for a failed
connection; psycopg is checked on the message PostgreSQL sends with 28P01.
"""

from __future__ import annotations

import asyncio
import os
import socket

import asyncpg  # type: ignore[import-untyped]
import psycopg
import pytest

from pgmux.testing import ClusterError, PostgresCluster, free_port

PASSWORD_ROLES = ["scram_user", "md5_user", "plain_user"]
# What libpq's require_auth calls the method the server asks for.
REQUIRE_AUTH = {
    "scram_user": "scram-sha-256",
    "md5_user": "md5",
    "plain_user": "password",
    "trust_user": "none",
}


def _asyncpg_connect(pg: PostgresCluster, user: str, password: str | None) -> str:
    async def run() -> str:
        conn = await asyncpg.connect(
            host=pg.host, port=pg.port, user=user, password=password, database="app", ssl=False
        )
        try:
            current: str = await conn.fetchval("SELECT current_user")
            return current
        finally:
            await conn.close()

    return asyncio.run(run())


@pytest.mark.parametrize("name", PASSWORD_ROLES)
def test_right_password_connects_and_can_create_tables(
    pg: PostgresCluster, pg_passwords: dict[str, str | None], name: str
) -> None:
    password = pg_passwords[name]
    with psycopg.connect(pg.dsn("app", name, password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)
        conn.execute(f"CREATE TABLE public.probe_{name} (id int)")
        conn.rollback()


@pytest.mark.parametrize("name", PASSWORD_ROLES)
def test_wrong_password_is_rejected_with_28P01(pg: PostgresCluster, name: str) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn("app", name, "wrong"))
    with pytest.raises(asyncpg.InvalidPasswordError) as excinfo:
        _asyncpg_connect(pg, name, "wrong")
    assert excinfo.value.sqlstate == "28P01"


def test_trust_user_needs_no_password(pg: PostgresCluster) -> None:
    with psycopg.connect(pg.dsn("app", "trust_user")) as conn:
        assert conn.execute("SELECT current_user").fetchone() == ("trust_user",)
        conn.execute("CREATE TABLE public.probe_trust (id int)")
        conn.rollback()


def test_asyncpg_connects_with_scram(pg: PostgresCluster) -> None:
    assert _asyncpg_connect(pg, "scram_user", "scram_pw") == "scram_user"


@pytest.mark.skipif(psycopg.pq.version() < 160000, reason="require_auth needs libpq 16")
@pytest.mark.parametrize("name", sorted(REQUIRE_AUTH))
def test_server_asks_for_the_configured_method(
    pg: PostgresCluster, pg_passwords: dict[str, str | None], name: str
) -> None:
    # require_auth makes libpq fail unless the server uses exactly this method, which proves
    # the per-user pg_hba lines win over the scram-sha-256 catch-all.
    password = pg_passwords[name]
    dsn = pg.dsn("app", name, password) + f" require_auth={REQUIRE_AUTH[name]}"
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_passwords_are_stored_in_the_method_format(pg: PostgresCluster) -> None:
    rows = pg.psql(
        "SELECT rolname, coalesce(split_part(rolpassword, '$', 1), 'none') FROM pg_authid"
        " WHERE rolname LIKE '%\\_user' ORDER BY rolname"
    )
    stored = dict(line.split("|") for line in rows.splitlines())
    assert stored["scram_user"] == "SCRAM-SHA-256"
    assert stored["md5_user"].startswith("md5")
    assert stored["plain_user"] == "SCRAM-SHA-256"
    assert stored["trust_user"] == "none"


def test_superuser_dsn_and_unix_socket(pg: PostgresCluster) -> None:
    with psycopg.connect(pg.dsn()) as conn:
        assert conn.execute("SELECT current_setting('is_superuser')").fetchone() == ("on",)
    with psycopg.connect(pg.dsn(host=pg.socket_dir)) as conn:
        assert conn.execute("SELECT inet_server_addr()").fetchone() == (None,)


def test_odd_names_and_passwords_survive_quoting(pg: PostgresCluster) -> None:
    name, password = "odd user's", "p w'\\\"x"
    pg.add_user(name, password, method="md5")
    with psycopg.connect(pg.dsn("postgres", name, password)) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (name,)


def test_psql_error_carries_stderr(pg: PostgresCluster) -> None:
    with pytest.raises(ClusterError, match="no_such_table") as excinfo:
        pg.psql("SELECT 1;\nSELECT * FROM no_such_table;\nSELECT 2;")
    assert excinfo.value.returncode != 0


def _alive(pid: int) -> bool:
    # The exited postmaster is reparented to PID 1 and may linger as a zombie until reaped.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_stop_leaves_no_process_or_directory() -> None:
    cluster = PostgresCluster(settings={"work_mem": "8MB"}, max_connections=20)
    base_dir = cluster.base_dir
    with cluster:
        assert cluster.start() is cluster  # idempotent
        assert cluster.psql("SHOW work_mem").strip() == "8MB"
        assert cluster.psql("SHOW max_connections").strip() == "20"
        pid = int((cluster.data_dir / "postmaster.pid").read_text().split()[0])
        assert _alive(pid)
    assert not _alive(pid)
    assert not base_dir.exists()


def test_free_port_is_bindable() -> None:
    port = free_port()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))
