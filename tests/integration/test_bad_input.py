"""Clients that do not speak the protocol, lie about lengths, stall or vanish, over raw sockets.

Each bad client must get an ErrorResponse with SQLSTATE 08P01 (or just be closed, for one that
never finishes logging in) and must cost pgmux nothing: after every case a normal psycopg client
still works through the same pgmux process, and pgmux's memory does not follow the lengths a
client announces. Nor does it follow a peer that stops reading: a client that reads none of a
big reply, or a server that reads none of a client's COPY, makes pgmux stop reading from the
other side instead of buffering.

The pgmux under test runs with ``auth_type = trust`` (so that raw sockets log in with a bare
StartupMessage), ``max_packet_size = 10000``, ``client_login_timeout = 1.5`` and a pool of one
server connection, which makes a leaked or dirty server connection visible to the next client.
"""

from __future__ import annotations

import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

PROTOCOL_3_0 = 196608
LOGIN_TIMEOUT = 1.5
MAX_PACKET_SIZE = 10000


# -- a raw frontend -----------------------------------------------------------------------------


def startup_packet(user: str = "scram_user", database: str = "app") -> bytes:
    body = struct.pack("!i", PROTOCOL_3_0)
    body += b"user\0" + user.encode() + b"\0database\0" + database.encode() + b"\0\0"
    return struct.pack("!i", len(body) + 4) + body


def header(kind: bytes, length: int) -> bytes:
    return kind + struct.pack("!i", length)


def query(sql: str) -> bytes:
    body = sql.encode() + b"\0"
    return header(b"Q", len(body) + 4) + body


def recv_exact(sock: socket.socket, size: int) -> bytes | None:
    """``size`` bytes, or None if the peer closed first."""
    data = b""
    while len(data) < size:
        try:
            chunk = sock.recv(size - len(data))
        except ConnectionResetError:
            return None
        if not chunk:
            return None
        data += chunk
    return data


def read_message(sock: socket.socket) -> tuple[bytes, bytes] | None:
    """The next backend message as (type, body), or None at end of stream."""
    head = recv_exact(sock, 5)
    if head is None:
        return None
    kind, length = head[:1], struct.unpack("!i", head[1:])[0]
    body = recv_exact(sock, length - 4)
    assert body is not None, f"connection closed inside a {kind!r} message"
    return kind, body


def error_fields(body: bytes) -> dict[str, str]:
    """ErrorResponse body -> {field code: value}, e.g. {"S": "FATAL", "C": "08P01", ...}."""
    fields: dict[str, str] = {}
    for part in body.rstrip(b"\0").split(b"\0"):
        if part:
            fields[part[:1].decode()] = part[1:].decode()
    return fields


def read_until_closed(sock: socket.socket) -> list[tuple[bytes, bytes]]:
    messages = []
    while (message := read_message(sock)) is not None:
        messages.append(message)
    return messages


def expect_error_then_close(sock: socket.socket) -> dict[str, str]:
    """Fields of the ErrorResponse pgmux sends; it must be the last message before the close."""
    messages = read_until_closed(sock)
    assert messages, "pgmux closed the connection without an ErrorResponse"
    kind, body = messages[-1]
    assert kind == b"E", f"expected an ErrorResponse last, got {messages!r}"
    fields = error_fields(body)
    assert fields["S"] == "FATAL"
    return fields


def data_row_values(body: bytes) -> list[bytes | None]:
    (count,) = struct.unpack_from("!h", body)
    pos, values = 2, []
    for _ in range(count):
        (length,) = struct.unpack_from("!i", body, pos)
        pos += 4
        values.append(None if length < 0 else body[pos : pos + length])
        pos += max(length, 0)
    return values


def until_ready(sock: socket.socket) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """Messages up to ReadyForQuery, and its transaction status."""
    messages = []
    while True:
        message = read_message(sock)
        assert message is not None, f"closed before ReadyForQuery after {messages!r}"
        if message[0] == b"Z":
            return messages, message[1]
        assert message[0] != b"E", error_fields(message[1])
        messages.append(message)


def connect(pgmux: PgmuxProcess) -> socket.socket:
    return socket.create_connection((pgmux.host, pgmux.port), timeout=10)


def logged_in(pgmux: PgmuxProcess) -> socket.socket:
    sock = connect(pgmux)
    sock.sendall(startup_packet())
    until_ready(sock)
    return sock


def hard_close(sock: socket.socket) -> None:
    """Vanish: close with a TCP reset, as a crashed client or a dropped network would."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def assert_works(pgmux: PgmuxProcess, password: str | None = None) -> None:
    dsn = pgmux.dsn("scram_user", password)
    with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS line")


# -- fixtures -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def by_mode(pg: PostgresCluster) -> Iterator[Callable[[str], PgmuxProcess]]:
    """One shared pgmux per pool mode: every case also checks that the others left it healthy."""
    started: dict[str, PgmuxProcess] = {}
    t = f"host={pg.host} port={pg.port}"

    def get(mode: str) -> PgmuxProcess:
        if mode not in started:
            started[mode] = PgmuxProcess(
                {"app": f"{t} dbname=app", "*": t},
                {
                    "auth_type": "trust",
                    "pool_mode": mode,
                    "default_pool_size": 1,
                    "max_packet_size": MAX_PACKET_SIZE,
                    "client_login_timeout": LOGIN_TIMEOUT,
                    # A leaked server connection then fails the next client instead of hanging it.
                    "query_wait_timeout": 5,
                },
                userlist={"scram_user": "scram_pw"},
            ).start()
        return started[mode]

    yield get
    for process in started.values():
        process.stop()


@pytest.fixture
def pgmux(by_mode: Callable[[str], PgmuxProcess]) -> Iterator[PgmuxProcess]:
    process = by_mode("transaction")
    yield process
    assert_works(process)


MODES = ["session", "transaction"]


# -- the startup packet -------------------------------------------------------------------------


def test_http_request_instead_of_startup(pgmux: PgmuxProcess) -> None:
    with connect(pgmux) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        fields = expect_error_then_close(sock)
    assert fields["C"] == "08P01"
    assert "startup packet" in fields["M"]


@pytest.mark.parametrize("length", [100_000, 0x7FFF_FFFF, 4, 0, -1, 7])
def test_startup_length_out_of_range(pgmux: PgmuxProcess, length: int) -> None:
    # The header alone is enough: pgmux must not wait for 100 kB that will never come.
    with connect(pgmux) as sock:
        sock.settimeout(2)
        start = time.monotonic()
        sock.sendall(struct.pack("!ii", length, PROTOCOL_3_0))
        fields = expect_error_then_close(sock)
    assert time.monotonic() - start < 1.0
    assert fields["C"] == "08P01"
    assert str(length) in fields["M"]


def test_startup_packet_with_bad_layout(pgmux: PgmuxProcess) -> None:
    body = struct.pack("!i", PROTOCOL_3_0) + b"user\0scram_user\0database"  # no terminators
    with connect(pgmux) as sock:
        sock.sendall(struct.pack("!i", len(body) + 4) + body)
        fields = expect_error_then_close(sock)
    assert fields["C"] == "08P01"


def packet(params: dict[str, str], protocol: int = PROTOCOL_3_0) -> bytes:
    pairs = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in params.items())
    body = struct.pack("!i", protocol) + pairs + b"\0"
    return struct.pack("!i", len(body) + 4) + body


SSL_REQUEST = struct.pack("!ii", 8, 80877103)
GSSENC_REQUEST = struct.pack("!ii", 8, 80877104)
APP = {"user": "scram_user", "database": "app"}


@pytest.mark.parametrize(
    ("data", "sqlstate", "words"),
    [
        (packet({"database": "app"}), "28000", "no PostgreSQL user name"),
        (packet(APP, protocol=2 << 16), "0A000", "unsupported frontend protocol 2.0"),
        (packet({**APP, "replication": "database"}), "0A000", "replication"),
        (packet({**APP, "options": "not-an-option"}), "42601", "not-an-option"),
        (packet({**APP, "options": "-c work_mem"}), "42601", "work_mem"),
        (SSL_REQUEST + SSL_REQUEST, "08P01", "encryption"),
        (GSSENC_REQUEST + SSL_REQUEST, "08P01", "encryption"),
    ],
    ids=[
        "no-user",
        "protocol-2",
        "replication",
        "options-junk",
        "options-no-value",
        "ssl-twice",
        "gss-then-ssl",
    ],
)
def test_refused_startup(pgmux: PgmuxProcess, data: bytes, sqlstate: str, words: str) -> None:
    with connect(pgmux) as sock:
        sock.sendall(data)
        if data.startswith((SSL_REQUEST, GSSENC_REQUEST)):
            assert recv_exact(sock, 1) == b"N"  # no encryption: go on in plain text
        fields = expect_error_then_close(sock)
    assert fields["C"] == sqlstate
    assert words in fields["M"]


def test_cancel_request_with_unknown_key(pgmux: PgmuxProcess) -> None:
    # Like PostgreSQL: no answer either way, so a guessed key learns nothing.
    with connect(pgmux) as sock:
        sock.sendall(struct.pack("!iiii", 16, 80877102, 12345, 67890))
        assert read_until_closed(sock) == []


# -- after login --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(
    ("bad", "words"),
    [
        (header(b"Q", 1_000_000), "max_packet_size"),
        (header(b"Q", 3), "length"),
        (header(b"Q", -5), "length"),
        (header(b"w", 4), "'w'"),
        (header(b"\0", 4), "type"),
    ],
    ids=["over-max-packet-size", "length-3", "negative-length", "type-w", "type-nul"],
)
def test_bad_message_after_login(
    by_mode: Callable[[str], PgmuxProcess], mode: str, bad: bytes, words: str
) -> None:
    pgmux = by_mode(mode)
    with logged_in(pgmux) as sock:
        sock.sendall(bad)
        fields = expect_error_then_close(sock)
    assert fields["C"] == "08P01"
    assert words in fields["M"]
    assert_works(pgmux)


def test_malformed_parse_in_transaction_mode(by_mode: Callable[[str], PgmuxProcess]) -> None:
    # A named Parse whose name is not NUL-terminated: pgmux reads its fields to rename it.
    pgmux = by_mode("transaction")
    with logged_in(pgmux) as sock:
        sock.sendall(query("SELECT 1"))
        until_ready(sock)
        body = b"stmt_without_terminator"
        sock.sendall(header(b"P", len(body) + 4) + body)
        fields = expect_error_then_close(sock)
    assert fields["C"] == "08P01"
    assert "malformed" in fields["M"]
    assert_works(pgmux)


@pytest.mark.parametrize("mode", MODES)
def test_bad_message_after_good_ones(by_mode: Callable[[str], PgmuxProcess], mode: str) -> None:
    # In one read: a valid query then garbage; the query is answered, then the error comes.
    pgmux = by_mode(mode)
    with logged_in(pgmux) as sock:
        sock.sendall(query("SELECT 1"))
        until_ready(sock)
        sock.sendall(query("SELECT 2") + header(b"w", 4))
        messages = read_until_closed(sock)
    kinds = [kind for kind, _ in messages]
    assert kinds[-1] == b"E", messages
    assert error_fields(messages[-1][1])["C"] == "08P01"
    assert_works(pgmux)


@pytest.mark.parametrize("mode", MODES)
def test_client_vanishes_mid_message(by_mode: Callable[[str], PgmuxProcess], mode: str) -> None:
    # Part of a Query reaches the server; whoever gets that connection next would have their
    # bytes read as the rest of it, so it must not be given to anyone.
    pgmux = by_mode(mode)
    sock = logged_in(pgmux)
    sock.sendall(header(b"Q", 100) + b"SELECT 'half")
    time.sleep(0.1)
    hard_close(sock)
    with psycopg.connect(pgmux.dsn("scram_user"), connect_timeout=5, autocommit=True) as conn:
        assert conn.execute("SELECT 'whole'").fetchone() == ("whole",)


@pytest.mark.parametrize("mode", MODES)
def test_client_vanishes_mid_transaction(
    pg: PostgresCluster, by_mode: Callable[[str], PgmuxProcess], mode: str
) -> None:
    pgmux = by_mode(mode)
    sock = logged_in(pgmux)
    sock.sendall(query("BEGIN; CREATE TEMP TABLE dirty (x int); SELECT pg_backend_pid()"))
    messages, status = until_ready(sock)
    assert status == b"T"
    rows = [data_row_values(body) for kind, body in messages if kind == b"D"]
    pid = int(rows[0][0] or b"0")
    hard_close(sock)

    # The pool has one server connection: the next client must not inherit the transaction.
    with psycopg.connect(pgmux.dsn("scram_user"), connect_timeout=5, autocommit=True) as conn:
        row = conn.execute(
            "SELECT to_regclass('pg_temp.dirty') IS NULL, now() = statement_timestamp()"
        ).fetchone()
        assert row == (True, True)
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE

    # And the abandoned transaction does not linger on the server either.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        state = pg.psql(f"SELECT state FROM pg_stat_activity WHERE pid = {pid}").strip()
        if state != "idle in transaction":
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"backend {pid} is still idle in transaction")


@pytest.mark.parametrize("mode", MODES)
def test_query_pipelined_after_startup(by_mode: Callable[[str], PgmuxProcess], mode: str) -> None:
    # PostgreSQL answers a Query sent right behind the StartupMessage; pgmux must too, and
    # with this client's own bytes.
    pgmux = by_mode(mode)
    with connect(pgmux) as sock:
        sock.sendall(startup_packet() + query("SELECT 'mine'"))
        until_ready(sock)  # the login
        messages, status = until_ready(sock)  # the query
    rows = [data_row_values(body) for kind, body in messages if kind == b"D"]
    assert (rows, status) == ([[b"mine"]], b"I")


def test_partial_header_does_not_take_a_server(by_mode: Callable[[str], PgmuxProcess]) -> None:
    pgmux = by_mode("transaction")  # one server connection
    with logged_in(pgmux) as stalled, logged_in(pgmux) as other:
        stalled.sendall(b"Q\0\0")  # 3 of the 5 header bytes, then nothing
        time.sleep(0.2)
        other.sendall(query("SELECT 1"))
        other.settimeout(1.5)
        try:
            _, status = until_ready(other)
        except TimeoutError:
            pytest.fail("a client with 3 bytes of a header holds the only server connection")
        assert status == b"I"


# -- stalling clients ---------------------------------------------------------------------------


@pytest.mark.parametrize("sent", [b"", startup_packet()[:10]], ids=["nothing", "half-startup"])
def test_stalled_login_is_closed_after_client_login_timeout(
    pgmux: PgmuxProcess, sent: bytes
) -> None:
    with connect(pgmux) as sock:
        start = time.monotonic()
        sock.sendall(sent)
        # Meanwhile everybody else is served at once.
        assert_works(pgmux)
        assert time.monotonic() - start < LOGIN_TIMEOUT
        messages = read_until_closed(sock)
        elapsed = time.monotonic() - start
    assert LOGIN_TIMEOUT - 0.2 <= elapsed < LOGIN_TIMEOUT + 2.5
    errors = [error_fields(body) for kind, body in messages if kind == b"E"]
    assert [kind for kind, _ in messages] in ([], [b"E"])
    for fields in errors:
        assert fields["C"].startswith("08")
        assert "client_login_timeout" in fields["M"]


# -- memory -------------------------------------------------------------------------------------


def test_announced_lengths_do_not_allocate(pgmux_factory: Callable[..., PgmuxProcess]) -> None:
    # Default max_packet_size (2 GB): a 2 GB message is allowed, so nothing stops it early.
    # auth_type = plain lets a raw client answer the password request with a bare message.
    process = pgmux_factory(auth_type="plain")
    assert process.process is not None
    pid = process.process.pid
    with psycopg.connect(process.dsn("scram_user", "scram_pw"), connect_timeout=5) as conn:
        conn.execute("SELECT 1")
    baseline = vm_rss_kib(pid)
    junk = b"x" * (64 * 1024)

    # During login: a password message that says it is 2 GB long is refused at its header (see
    # test_a_login_message_longer_than_postgresql_allows_is_refused), so nothing is buffered.
    during_login = connect(process)
    during_login.sendall(startup_packet())
    kind, body = read_message(during_login) or (b"", b"")
    assert (kind, struct.unpack("!i", body[:4])[0]) == (b"R", 3)  # AuthenticationCleartextPassword
    during_login.sendall(header(b"p", 0x7FFF_FFFF) + junk)
    assert expect_error_then_close(during_login)["C"] == "08P01"

    # After login: a 2 GB Query, forwarded towards PostgreSQL as it arrives.
    forwarding = connect(process)
    forwarding.sendall(startup_packet())
    read_message(forwarding)
    password = b"scram_pw\0"
    forwarding.sendall(header(b"p", len(password) + 4) + password)
    until_ready(forwarding)
    try:
        forwarding.sendall(header(b"Q", 0x7FFF_FFFF))
        for _ in range(16):
            forwarding.sendall(junk)
    except OSError:
        pass  # PostgreSQL refuses a message that long and hangs up; pgmux passes that on
    time.sleep(0.3)

    grown_kib = vm_rss_kib(pid) - baseline
    assert grown_kib < 32 * 1024, f"pgmux RSS grew by {grown_kib} KiB"
    assert_works(process, "scram_pw")
    during_login.close()
    forwarding.close()
    assert_works(process, "scram_pw")


def test_a_client_that_stops_reading_is_not_buffered_for(
    pgmux_factory: Callable[..., PgmuxProcess],
) -> None:
    # A ~200 MB reply to a client that reads none of it: once the client's socket and pgmux's
    # write buffer are full, pgmux stops reading from PostgreSQL (pause_reading), whose backend
    # then waits. pgmux's memory stays flat meanwhile, other clients carry on, and when the
    # client does read, every row arrives.
    rows, width = 200_000, 1000
    process = pgmux_factory(auth_type="trust")
    assert process.process is not None
    pid = process.process.pid
    assert_works(process)
    baseline = vm_rss_kib(pid)

    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    slow.settimeout(10)
    slow.connect((process.host, process.port))
    slow.sendall(startup_packet())
    until_ready(slow)
    slow.sendall(query(f"SELECT repeat('x', {width}) FROM generate_series(1, {rows})"))
    time.sleep(1.5)  # long enough for PostgreSQL to have sent all of it, had pgmux read it

    grown_kib = vm_rss_kib(pid) - baseline
    assert grown_kib < 32 * 1024, f"pgmux RSS grew by {grown_kib} KiB for a client not reading"
    assert_works(process)

    messages, status = until_ready(slow)
    data_rows = [body for kind, body in messages if kind == b"D"]
    assert len(data_rows) == rows
    assert data_row_values(data_rows[0]) == data_row_values(data_rows[-1]) == [b"x" * width]
    assert status == b"I"
    slow.close()


def test_a_server_that_stops_reading_stops_pgmux_reading_its_client(
    pgmux_factory: Callable[..., PgmuxProcess],
) -> None:
    # The other direction: a client streams ~100 MB of COPY data while its backend waits for a
    # lock and reads nothing. Once PostgreSQL's socket and pgmux's write buffer are full, pgmux
    # stops reading from the client (its sends block), so pgmux's memory stays flat; when the
    # lock goes, every row arrives.
    rows, line = 100_000, b"x" * 1000 + b"\n"
    process = pgmux_factory(auth_type="trust")
    assert process.process is not None
    pid = process.process.pid
    dsn = process.dsn("scram_user")
    with psycopg.connect(dsn, autocommit=True) as setup:
        setup.execute("DROP TABLE IF EXISTS copy_target; CREATE TABLE copy_target (t text)")
    baseline = vm_rss_kib(pid)

    with psycopg.connect(dsn) as blocker:
        blocker.execute("LOCK TABLE copy_target IN ACCESS EXCLUSIVE MODE")
        copier = logged_in(process)
        copier.sendall(query("COPY copy_target FROM STDIN"))
        copy_data = header(b"d", len(line) * 100 + 4) + line * 100
        sent = threading.Event()

        def stream() -> None:
            for _ in range(rows // 100):
                copier.sendall(copy_data)
            copier.sendall(header(b"c", 4))
            sent.set()

        sender = threading.Thread(target=stream, daemon=True)
        sender.start()
        time.sleep(1.5)  # long enough for all of it to reach pgmux, had pgmux kept reading
        grown_kib = vm_rss_kib(pid) - baseline
        assert not sent.is_set(), "the client could send everything while the server read nothing"
        assert grown_kib < 32 * 1024, f"pgmux RSS grew by {grown_kib} KiB for a stalled server"
        assert_works(process)
    # The blocker's transaction ended with its connection: the lock is gone.
    sender.join(timeout=30)
    assert sent.is_set()
    messages, status = until_ready(copier)
    complete = [body for kind, body in messages if kind == b"C"]
    assert complete == [f"COPY {rows}".encode() + b"\0"]
    assert status == b"I"
    copier.close()


@pytest.mark.parametrize(("auth_type", "request_code"), [("md5", 5), ("plain", 3)])
def test_a_password_message_without_its_nul_is_a_protocol_violation(
    pgmux_factory: Callable[..., PgmuxProcess], auth_type: str, request_code: int
) -> None:
    process = pgmux_factory(auth_type=auth_type)
    sock = connect(process)
    sock.sendall(startup_packet())
    kind, body = read_message(sock) or (b"", b"")
    assert (kind, struct.unpack("!i", body[:4])[0]) == (b"R", request_code)
    sock.sendall(header(b"p", 4 + 3) + b"abc")  # PostgreSQL: "invalid password packet size"
    fields = expect_error_then_close(sock)
    assert fields["C"] == "08P01" and "password packet" in fields["M"]
    sock.close()
    assert_works(process, "scram_pw")


@pytest.mark.parametrize(("auth_type", "request_code"), [("plain", 3), ("scram-sha-256", 10)])
def test_a_login_message_longer_than_postgresql_allows_is_refused(
    pgmux_factory: Callable[..., PgmuxProcess], auth_type: str, request_code: int
) -> None:
    # PostgreSQL takes at most 65535 bytes for a password or SASL message (its
    # PG_MAX_AUTH_TOKEN_LENGTH). Before logging in, a client must not get pgmux to buffer more:
    # it announces 1 GB and streams, and is refused at the header.
    process = pgmux_factory(auth_type=auth_type)
    assert process.process is not None
    baseline = vm_rss_kib(process.process.pid)
    sock = connect(process)
    sock.sendall(startup_packet(user="no_such_user"))
    kind, body = read_message(sock) or (b"", b"")
    assert (kind, struct.unpack("!i", body[:4])[0]) == (b"R", request_code)
    sock.sendall(header(b"p", 1 << 30) + b"x" * (64 * 1024))
    fields = expect_error_then_close(sock)
    assert fields["C"] == "08P01" and "the limit for a login message (65535 bytes)" in fields["M"]
    sock.close()
    assert vm_rss_kib(process.process.pid) - baseline < 8 * 1024
    assert_works(process, "scram_pw")


def test_a_client_waiting_at_login_is_not_buffered_for(
    pgmux_factory: Callable[..., PgmuxProcess],
) -> None:
    # Session mode, one server: a second client logs in and waits for it, pipelining a ~40 MB
    # query behind its password. pgmux stops reading from it after a few hundred kB instead of
    # holding the whole query, and forwards it once the server is free.
    process = pgmux_factory(auth_type="plain", pool_mode="session", default_pool_size=1)
    assert process.process is not None
    pid = process.process.pid
    holder = psycopg.connect(process.dsn("scram_user", "scram_pw"), autocommit=True)
    holder.execute("SELECT 1")
    baseline = vm_rss_kib(pid)

    waiter = connect(process)
    waiter.sendall(startup_packet())
    kind, _ = read_message(waiter) or (b"", b"")
    assert kind == b"R"
    password = b"scram_pw\0"
    big = query("SELECT 7 /* " + "x" * (40 * 1024 * 1024) + " */")
    sender = threading.Thread(
        target=waiter.sendall, args=(header(b"p", len(password) + 4) + password + big,)
    )
    sender.start()
    time.sleep(1.0)  # the sender is now blocked on a full socket, not on pgmux's memory
    grown_kib = vm_rss_kib(pid) - baseline
    assert sender.is_alive(), "pgmux read the whole query while the client waited for a server"
    assert grown_kib < 16 * 1024, f"pgmux RSS grew by {grown_kib} KiB"

    holder.close()  # the server is free: the waiting client gets it, and its query goes through
    sender.join(30)
    assert not sender.is_alive()
    messages, status = until_ready(waiter)  # the welcome, up to its ReadyForQuery
    messages, status = until_ready(waiter)  # the query's reply
    rows = [data_row_values(body) for kind, body in messages if kind == b"D"]
    assert rows == [[b"7"]] and status == b"I"
    waiter.close()
    assert_works(process, "scram_pw")
