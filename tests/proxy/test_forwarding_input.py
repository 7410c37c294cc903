"""Whatever a logged-in client sends, forwarding handles it without an internal error.

A client and a server connection of a transaction-mode pool run on fake transports (no socket,
no PostgreSQL). Hypothesis builds streams of frontend messages, well-formed or not (Parse, Bind,
Describe, Close, Execute, Sync, Query, FunctionCall, COPY messages, unknown types, lying
lengths), splits them at arbitrary points, and lets the "server" answer now and then. Nothing
may escape ``buffer_updated``, nothing may be logged with a traceback, and no ErrorResponse to
the client may carry SQLSTATE XX000.
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

from pgmux.config import parse_ini
from pgmux.protocol import messages as m
from pgmux.proxy.pooler import Pooler
from pgmux.testing.fakes import RecordingTransport, feed, transaction_pair

CONFIG = """
[databases]
app = host=/nonexistent-pgmux-test port=5432 dbname=app

[pgbouncer]
pool_mode = transaction
"""


@pytest.fixture(scope="module")
def tracebacks() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Handler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info:
                records.append(record)

    handler = Handler(logging.ERROR)
    logging.getLogger("pgmux").addHandler(handler)
    yield records
    logging.getLogger("pgmux").removeHandler(handler)


def _message(kind: bytes, body: bytes, length: int | None) -> bytes:
    return kind + struct.pack("!i", len(body) + 4 if length is None else length) + body


names = st.sampled_from([b"", b"s1", b"S_1", b"x" * 70, b"\xff\x01"]).map(lambda n: n + b"\x00")
sql = st.sampled_from(
    [b"SELECT 1", b"SELECT $1", b"DEALLOCATE s1", b"SELECT 1; DEALLOCATE s1", b"DISCARD ALL",
     b"SET a = 1", b"LISTEN x", b"\xff\xfe"]
)  # fmt: skip
int16 = st.sampled_from([-2, -1, 0, 1, 3]).map(lambda n: struct.pack("!h", n))
int32 = st.sampled_from([-1, 0, 1, 100]).map(lambda n: struct.pack("!i", n))
bodies = {
    b"P": st.tuples(names, sql, int16, st.sampled_from([b"", b"\x00\x00\x00\x17"])).map(
        lambda t: t[0] + t[1] + b"\x00" + t[2] + t[3]
    ),
    b"B": st.tuples(names, names, int16, int16, int32, st.binary(max_size=4), int16).map(b"".join),
    b"D": st.tuples(st.sampled_from([b"S", b"P", b"X", b""]), names).map(b"".join),
    b"C": st.tuples(st.sampled_from([b"S", b"P", b"X", b""]), names).map(b"".join),
    b"E": st.tuples(names, int32).map(b"".join),
    b"Q": sql.map(lambda text: text + b"\x00"),
}
messages = st.one_of(
    *(
        st.builds(_message, st.just(kind), body | st.binary(max_size=12), st.none())
        for kind, body in bodies.items()
    ),
    st.builds(
        _message,
        st.sampled_from([b"S", b"H", b"F", b"d", b"c", b"f"]) | st.binary(min_size=1, max_size=1),
        st.binary(max_size=12),
        st.none() | st.sampled_from([0, 3, 4, 1 << 21]),
    ),
)
replies = st.sampled_from(
    [
        m.message(b"1", b""),
        m.message(b"2", b""),
        m.ready_for_query(),
        m.message(b"E", b"SERROR\x00C26000\x00Mnope\x00\x00") + m.ready_for_query(),
    ]
)


async def _forward(
    stream: bytes, cuts: list[int], answers: list[bytes], named: bool
) -> RecordingTransport:
    pooler = Pooler(parse_ini(CONFIG), asyncio.get_running_loop())
    client, server = transaction_pair(pooler, user="alice", tracked=named)
    bounds = sorted({0, len(stream), *(c % (len(stream) + 1) for c in cuts)})
    client_transport: RecordingTransport = client.transport  # type: ignore[assignment]
    for start, end, answer in zip(bounds, bounds[1:], answers + [b""] * len(bounds), strict=False):
        if client_transport.closed:
            break
        feed(client, stream[start:end])
        if answer and server.client is client:
            feed(server, answer)
        await asyncio.sleep(0)
    return client_transport


@settings(max_examples=400, deadline=None)
@given(
    sent=st.lists(messages, min_size=1, max_size=5),
    cuts=st.lists(st.integers(min_value=0, max_value=500), max_size=3),
    answers=st.lists(st.just(b"") | replies, max_size=4),
    named=st.booleans(),
)
def test_forwarding_handles_any_client_stream_without_an_internal_error(
    tracebacks: list[logging.LogRecord],
    sent: list[bytes],
    cuts: list[int],
    answers: list[bytes],
    named: bool,
) -> None:
    transport = uvloop.run(_forward(b"".join(sent), cuts, answers, named))
    assert "XX000" not in transport.error_codes()
    assert not tracebacks, tracebacks[0].getMessage()
