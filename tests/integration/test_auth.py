"""Authentication through a real pgmux process: clients logging in to pgmux, pgmux to PostgreSQL.

Client side: every ``auth_type`` against auth_file secrets stored as plain text, md5 and SCRAM
(the md5 and SCRAM ones copied from ``pg_authid``, so they are what PostgreSQL itself would
store). A wrong password and an unknown user must look the same (28P01, same message), a user
missing under ``trust`` gets 28000 and an unknown database 3D000. SQLSTATEs are read with asyncpg,
because libpq reports none for a failed connection.

Server side: pgmux logging in as each ``pg`` role (SCRAM, md5, cleartext, trust) with the password
from auth_file, from ``password=`` in [databases], or with no password at all (SCRAM pass-through
and auth_query). The client-side tests force ``user=trust_user`` in [databases] so that the server
login cannot be what fails.

pgmux processes are started once per module and shared by the tests that need the same config.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable, Iterator

import asyncpg
import psycopg
import pytest

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

Start = Callable[..., PgmuxProcess]
PASSWORDS = {"scram_user": "scram_pw", "md5_user": "md5_pw", "plain_user": "plain_pw"}


# -- helpers ------------------------------------------------------------------------------------


def target(pg: PostgresCluster) -> str:
    return f"host={pg.host} port={pg.port}"


def stored_secret(pg: PostgresCluster, role: str) -> str:
    """What PostgreSQL stores for ``role``: an md5 or SCRAM secret, never the password."""
    return pg.psql(f"SELECT rolpassword FROM pg_authid WHERE rolname = '{role}'").strip()


def login_error(
    pgmux: PgmuxProcess, user: str, password: str | None, database: str = "app"
) -> asyncpg.PostgresError:
    """The error an asyncpg login fails with; the test fails if the login succeeds."""

    async def attempt() -> None:
        conn = await asyncpg.connect(
            host=pgmux.host, port=pgmux.port, user=user, password=password,
            database=database, ssl=False, timeout=10,
        )  # fmt: skip
        await conn.close()

    try:
        asyncio.run(attempt())
    except asyncpg.PostgresError as exc:
        return exc
    pytest.fail(f"{user}@{database} logged in but should not have")


def current_user(pgmux: PgmuxProcess, user: str, password: str | None, dbname: str = "app") -> str:
    with psycopg.connect(pgmux.dsn(user, password, dbname), connect_timeout=10) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None
    return str(row[0])


def psycopg_login_message(pgmux: PgmuxProcess, user: str, password: str) -> str:
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(pgmux.dsn(user, password), connect_timeout=10).close()
    return str(info.value)


@pytest.fixture(scope="module")
def start(pg: PostgresCluster) -> Iterator[Start]:
    """Like ``pgmux_factory`` but module-scoped, so that tests can share a process."""
    started: list[PgmuxProcess] = []

    def start(
        databases: dict[str, str], userlist: dict[str, str], **settings: object
    ) -> PgmuxProcess:
        merged: dict[str, object] = {"auth_type": "scram-sha-256"}
        merged.update(settings)
        process = PgmuxProcess(databases, merged, userlist=userlist)
        started.append(process)
        return process.start()

    yield start
    for process in started:
        process.stop()


# -- client authentication ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def client_auth(pg: PostgresCluster, start: Start) -> Callable[[str], PgmuxProcess]:
    """One pgmux per auth_type; the auth_file holds one secret of each kind.

    scram_user has its SCRAM secret, md5_user its md5 secret (both from pg_authid) and
    plain_user a plain-text password. Every server login is as trust_user.
    """
    userlist = {
        "scram_user": stored_secret(pg, "scram_user"),
        "md5_user": stored_secret(pg, "md5_user"),
        "plain_user": "plain_pw",
    }
    assert userlist["scram_user"].startswith("SCRAM-SHA-256$4096:")
    assert userlist["md5_user"].startswith("md5") and len(userlist["md5_user"]) == 35
    databases = {"app": f"{target(pg)} dbname=app user=trust_user"}
    processes: dict[str, PgmuxProcess] = {}

    def get(auth_type: str) -> PgmuxProcess:
        if auth_type not in processes:
            processes[auth_type] = start(databases, userlist, auth_type=auth_type)
        return processes[auth_type]

    return get


ACCEPTED = [
    ("scram-sha-256", "scram_user"),
    ("scram-sha-256", "plain_user"),
    ("md5", "scram_user"),  # a SCRAM secret makes pgmux ask for SCRAM even under md5
    ("md5", "md5_user"),
    ("md5", "plain_user"),
    ("plain", "scram_user"),
    ("plain", "md5_user"),
    ("plain", "plain_user"),
]


@pytest.mark.parametrize(("auth_type", "user"), ACCEPTED)
def test_right_password_logs_in(
    client_auth: Callable[[str], PgmuxProcess], auth_type: str, user: str
) -> None:
    pgmux = client_auth(auth_type)
    assert current_user(pgmux, user, PASSWORDS[user]) == "trust_user"


@pytest.mark.parametrize(("auth_type", "user"), ACCEPTED)
def test_wrong_password_is_28p01(
    client_auth: Callable[[str], PgmuxProcess], auth_type: str, user: str
) -> None:
    error = login_error(client_auth(auth_type), user, "not-the-password")
    assert error.sqlstate == "28P01"
    assert str(error) == f'password authentication failed for user "{user}"'


def test_md5_secret_cannot_serve_scram(client_auth: Callable[[str], PgmuxProcess]) -> None:
    # SCRAM needs more than an md5 hash holds: the right password is refused, like a wrong one.
    error = login_error(client_auth("scram-sha-256"), "md5_user", "md5_pw")
    assert error.sqlstate == "28P01"
    assert str(error) == 'password authentication failed for user "md5_user"'


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5", "plain"])
def test_unknown_user_looks_like_wrong_password(
    client_auth: Callable[[str], PgmuxProcess], auth_type: str
) -> None:
    pgmux = client_auth(auth_type)
    unknown = login_error(pgmux, "nobody", "whatever")
    wrong = login_error(pgmux, "plain_user", "whatever")
    assert unknown.sqlstate == wrong.sqlstate == "28P01"
    assert str(unknown) == 'password authentication failed for user "nobody"'
    assert str(unknown).replace("nobody", "plain_user") == str(wrong)
    assert (unknown.detail, unknown.hint) == (wrong.detail, wrong.hint)
    # libpq shows the same text.
    text = psycopg_login_message(pgmux, "nobody", "whatever")
    assert 'password authentication failed for user "nobody"' in text


def scram_salt(pgmux: PgmuxProcess, user: str) -> str:
    """The salt pgmux offers ``user`` in its server-first-message (the exchange is then dropped)."""
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0app\0\0"
    with socket.create_connection((pgmux.host, pgmux.port), timeout=5) as sock:
        sock.sendall(struct.pack("!i", len(body) + 4) + body)

        def message() -> bytes:
            head = sock.recv(5, socket.MSG_WAITALL)
            assert head[:1] == b"R", head
            return sock.recv(struct.unpack("!i", head[1:])[0] - 4, socket.MSG_WAITALL)

        assert message()[:4] == struct.pack("!i", 10)  # AuthenticationSASL
        first = b"n,,n=,r=0123456789abcdef"
        payload = b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first
        sock.sendall(b"p" + struct.pack("!i", len(payload) + 4) + payload)
        server_first = message()[4:].decode()  # after the AuthenticationSASLContinue code
    return dict(part.split("=", 1) for part in server_first.split(","))["s"]


@pytest.mark.parametrize("user", ["scram_user", "plain_user", "nobody"])
def test_scram_salt_is_stable_for_every_user(
    client_auth: Callable[[str], PgmuxProcess], user: str
) -> None:
    # A stored SCRAM secret has one salt; were an unknown user's (or a plain password's) salt
    # new on every attempt, two attempts would tell which users exist. PostgreSQL answers an
    # unknown user with a salt derived from the name (scram_mock_salt) for the same reason.
    pgmux = client_auth("scram-sha-256")
    assert scram_salt(pgmux, user) == scram_salt(pgmux, user)


def test_unknown_database_is_3d000(client_auth: Callable[[str], PgmuxProcess]) -> None:
    error = login_error(client_auth("scram-sha-256"), "plain_user", "plain_pw", database="nope")
    assert error.sqlstate == "3D000"
    assert 'database "nope" does not exist' in str(error)


def test_trust_needs_no_password_but_a_known_user(
    client_auth: Callable[[str], PgmuxProcess],
) -> None:
    pgmux = client_auth("trust")
    assert current_user(pgmux, "md5_user", None) == "trust_user"
    assert current_user(pgmux, "plain_user", "wrong, and never asked for") == "trust_user"
    error = login_error(pgmux, "nobody", None)
    assert error.sqlstate == "28000"
    assert "nobody" in str(error)


def test_any_accepts_every_user_name(pg: PostgresCluster, start: Start) -> None:
    pgmux = start({"app": f"{target(pg)} dbname=app user=trust_user"}, {}, auth_type="any")
    assert current_user(pgmux, "whoever", None) == "trust_user"
    assert current_user(pgmux, "someone_else", "ignored") == "trust_user"


# -- server authentication ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_pgmux(pg: PostgresCluster, start: Start) -> PgmuxProcess:
    """conftest's defaults: plain passwords in auth_file, no user forced, a '*' fallback."""
    userlist = dict(PASSWORDS, trust_user="never-asked")
    return start({"app": f"{target(pg)} dbname=app", "*": target(pg)}, userlist)


@pytest.mark.parametrize("role", ["scram_user", "md5_user", "plain_user", "trust_user"])
def test_server_login_with_auth_file_password(default_pgmux: PgmuxProcess, role: str) -> None:
    # pg_hba makes each role log in with its own method; pgmux answers with the auth_file entry.
    password = PASSWORDS.get(role, "never-asked")
    assert current_user(default_pgmux, role, password) == role


def test_unknown_database_behind_fallback_is_forwarded(default_pgmux: PgmuxProcess) -> None:
    error = login_error(default_pgmux, "scram_user", "scram_pw", database="no_such_db")
    assert error.sqlstate == "3D000"
    assert "no_such_db" in str(error)


@pytest.fixture(scope="module")
def connstring_pgmux(pg: PostgresCluster, start: Start) -> PgmuxProcess:
    """Server users and passwords forced in [databases]; clients log in as "client"."""
    t = target(pg)
    databases = {
        "db_scram": f"{t} dbname=app user=scram_user password=scram_pw",
        "db_md5": f"{t} dbname=app user=md5_user password=md5_pw",
        "db_plain": f"{t} dbname=app user=plain_user password=plain_pw",
        "db_trust": f"{t} dbname=app user=trust_user",
        # No password in [databases]: the md5 secret from auth_file answers md5 by itself.
        "db_md5_secret": f"{t} dbname=app user=md5_user",
        "db_bad": f"{t} dbname=app user=scram_user password=wrong_pw",
    }
    userlist = {"client": "client_pw", "md5_user": stored_secret(pg, "md5_user")}
    return start(databases, userlist)


@pytest.mark.parametrize(
    ("database", "role"),
    [
        ("db_scram", "scram_user"),
        ("db_md5", "md5_user"),
        ("db_plain", "plain_user"),
        ("db_trust", "trust_user"),
        ("db_md5_secret", "md5_user"),
    ],
)
def test_server_login_with_forced_user(
    connstring_pgmux: PgmuxProcess, database: str, role: str
) -> None:
    assert current_user(connstring_pgmux, "client", "client_pw", database) == role


def test_wrong_server_password_is_forwarded_and_isolated(connstring_pgmux: PgmuxProcess) -> None:
    with psycopg.connect(connstring_pgmux.dsn("client", "client_pw", "db_scram")) as survivor:
        error = login_error(connstring_pgmux, "client", "client_pw", database="db_bad")
        assert error.sqlstate == "28P01"
        assert 'password authentication failed for user "scram_user"' in str(error)
        # The pool that failed is the only one affected.
        assert survivor.execute("SELECT current_user").fetchone() == ("scram_user",)
        assert current_user(connstring_pgmux, "client", "client_pw", "db_scram") == "scram_user"


def test_scram_pass_through(pg: PostgresCluster, start: Start) -> None:
    # auth_file holds only what PostgreSQL stores: pgmux never learns the password, and logs in
    # to PostgreSQL with the ClientKey the client's own SCRAM proof revealed.
    userlist = {"scram_user": stored_secret(pg, "scram_user")}
    pgmux = start({"app": f"{target(pg)} dbname=app"}, userlist, pool_mode="session")
    dsn = pgmux.dsn("scram_user", "scram_pw")
    with psycopg.connect(dsn) as first, psycopg.connect(dsn) as second:
        # Two sessions at once: two server logins, both with the client's keys.
        pids = {conn.execute("SELECT pg_backend_pid()").fetchone() for conn in (first, second)}
        assert len(pids) == 2
        assert first.execute("SELECT current_user").fetchone() == ("scram_user",)
    assert login_error(pgmux, "scram_user", "wrong").sqlstate == "28P01"


@pytest.fixture(scope="module")
def auth_user(pg: PostgresCluster) -> str:
    """A superuser for auth_query (pg_authid is superuser-only) and a user only PostgreSQL knows."""
    pg.add_user("pgmux_auth", "auth_pw", superuser=True)
    pg.add_user("aq_user", "aq_pw")
    return "pgmux_auth"


@pytest.mark.parametrize("auth_type", ["scram-sha-256", "md5"])
def test_auth_query(pg: PostgresCluster, start: Start, auth_user: str, auth_type: str) -> None:
    pgmux = start(
        {"app": f"{target(pg)} dbname=app"}, {auth_user: "auth_pw"},
        auth_user=auth_user, auth_type=auth_type,
    )  # fmt: skip
    # aq_user's secret is SCRAM (SCRAM pass-through to the server), md5_user's is md5 (answered
    # with the md5 secret itself); neither is in auth_file.
    assert current_user(pgmux, "aq_user", "aq_pw") == "aq_user"
    if auth_type == "md5":
        assert current_user(pgmux, "md5_user", "md5_pw") == "md5_user"
    wrong = login_error(pgmux, "aq_user", "wrong")
    unknown = login_error(pgmux, "nobody", "wrong")
    assert wrong.sqlstate == unknown.sqlstate == "28P01"
    assert str(unknown) == 'password authentication failed for user "nobody"'
    # The user name is a bound parameter, never SQL text.
    injected = login_error(pgmux, "x' OR rolname = 'aq_user", "aq_pw")
    assert injected.sqlstate == "28P01"


def test_auth_query_survives_losing_its_connection(pg: PostgresCluster, start: Start) -> None:
    # Its own auth_user, so that the backends terminated below are this pgmux's only.
    pg.add_user("pgmux_auth_lost", "lost_pw", superuser=True)
    pg.add_user("aq_user", "aq_pw")
    pgmux = start(
        {"app": f"{target(pg)} dbname=app"}, {"pgmux_auth_lost": "lost_pw"},
        auth_user="pgmux_auth_lost",
    )  # fmt: skip
    kill = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'pgmux_auth_lost'"
    )
    for _ in range(5):
        assert current_user(pgmux, "aq_user", "aq_pw") == "aq_user"
        # The next lookup may well go out before the dying backend has closed its socket.
        pg.psql(kill)
    assert current_user(pgmux, "aq_user", "aq_pw") == "aq_user"


def abandon_login(pgmux: PgmuxProcess, user: str) -> None:
    """Send a StartupMessage for ``user`` and vanish while pgmux looks the user up."""
    body = struct.pack("!i", 196608) + b"user\0" + user.encode() + b"\0database\0app\0\0"
    with socket.create_connection((pgmux.host, pgmux.port), timeout=5) as sock:
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_auth_query_interrupted_by_a_leaving_client(
    pg: PostgresCluster, start: Start, auth_user: str
) -> None:
    # The server login is forced to trust_user, so only pgmux's own check stands between a
    # client and a session: the reply to an abandoned lookup must never answer the next one.
    pgmux = start(
        {"app": f"{target(pg)} dbname=app user=trust_user"}, {auth_user: "auth_pw"},
        auth_user=auth_user,
    )  # fmt: skip
    assert current_user(pgmux, "aq_user", "aq_pw") == "trust_user"  # auth connection opened
    for _ in range(3):
        abandon_login(pgmux, "aq_user")
        time.sleep(0.05)
        # aq_user's password must not open scram_user's account...
        assert login_error(pgmux, "scram_user", "aq_pw").sqlstate == "28P01"
        abandon_login(pgmux, "md5_user")
        time.sleep(0.05)
        # ...nor an md5 secret of someone else refuse aq_user.
        assert current_user(pgmux, "aq_user", "aq_pw") == "trust_user"
