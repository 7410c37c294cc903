"""Whatever a client sends after its startup packet, the login answers it as PostgreSQL would.

The login phase runs on fake transports, with no socket and no PostgreSQL. The pool is given
the parameters a first server would have reported, so a login that gets through needs no
server; a query after it that asks for one finds the database pointing at a unix socket
directory that does not exist. Hypothesis sends one to three arbitrary or half-plausible
messages (password, SASL, a Query, a Terminate, junk types, wrong lengths) under each client
auth_type. pgmux may refuse them, with an ErrorResponse or by closing, but never with an
internal error (SQLSTATE XX000) or a logged traceback.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Iterator

import pytest
import uvloop
from hypothesis import given, settings
from hypothesis import strategies as st

from pgmux.auth.md5 import md5_secret
from pgmux.config import parse_ini
from pgmux.protocol.startup import startup_message
from pgmux.proxy.client import ClientConnection
from pgmux.proxy.client_login import Credentials
from pgmux.proxy.pooler import Pooler
from pgmux.testing.fakes import RecordingTransport, feed

CONFIG = """
[databases]
app = host=/nonexistent-pgmux-test port=5432 dbname=app

[pgbouncer]
pool_mode = transaction
"""
USER, PASSWORD = "alice", "alice-password"
STARTUP = startup_message({"user": USER, "database": "app"})


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.records.append(record)


@pytest.fixture(scope="module")
def tracebacks() -> Iterator[_Tracebacks]:
    handler = _Tracebacks()
    logger = logging.getLogger("pgmux")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def _message(kind: bytes, body: bytes, length: int | None) -> bytes:
    return kind + struct.pack("!i", len(body) + 4 if length is None else length) + body


messages = st.builds(
    _message,
    kind=st.sampled_from([b"p", b"p", b"p", b"Q", b"X", b"S"]) | st.binary(min_size=1, max_size=1),
    body=st.binary(max_size=40)
    | st.builds(
        lambda n, tail: b"SCRAM-SHA-256\x00" + struct.pack("!i", n) + tail,
        st.sampled_from([-1, 0, 3, 8, 40]),
        st.sampled_from([b"", b"n,,n=,r=abc", b"y,,n=x,r=", b"\xff\xfe"]),
    )
    | st.builds(lambda text: text.encode() + b"\x00", st.text(max_size=20)),
    length=st.none() | st.sampled_from([0, 3, 4, 5, 1 << 20]),
)


async def _login_with(auth_type: str, secret: str, sent: list[bytes]) -> RecordingTransport:
    pooler = Pooler(parse_ini(CONFIG), asyncio.get_running_loop())
    pooler.auth_type = auth_type
    pooler.userlist = {USER: secret}
    pool = pooler.get_pool(pooler.resolve_database("app"), "app", USER, Credentials())
    pool.server_params = {"client_encoding": "UTF8"}
    client = ClientConnection(pooler)
    transport = RecordingTransport()
    client.connection_made(transport)  # type: ignore[arg-type]
    feed(client, STARTUP)
    for data in sent:
        for _ in range(3):
            await asyncio.sleep(0)
        if transport.closed:
            break
        feed(client, data)
    for _ in range(3):
        await asyncio.sleep(0)
    client.connection_lost(None)
    await asyncio.sleep(0)
    return transport


@settings(max_examples=300, deadline=None)
@given(
    auth_type=st.sampled_from(["md5", "plain", "scram-sha-256", "trust"]),
    plain_secret=st.booleans(),
    sent=st.lists(messages, min_size=1, max_size=3),
)
def test_login_answers_any_message_without_an_internal_error(
    tracebacks: _Tracebacks, auth_type: str, plain_secret: bool, sent: list[bytes]
) -> None:
    secret = PASSWORD if plain_secret else md5_secret(USER, PASSWORD)
    transport = uvloop.run(_login_with(auth_type, secret, sent))
    assert "XX000" not in transport.error_codes()
    assert not tracebacks.records, tracebacks.records[0].getMessage()
