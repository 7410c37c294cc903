"""The forwarding-phase scanners on plain bytes: the same facts however the stream is chunked.

Streams are random sequences of well-formed messages, cut at random points and fed the way the
proxy feeds them: the backend scanner chunk by chunk with no carry, the frontend scanner through
a copy of ``ClientConnection._forward``'s loop (unscanned tail carried into the next read,
intercepted Terminate ends the walk). Every chunk sits in a larger buffer with stale bytes on
both sides, as a read into the shared receive buffer does, so a scanner that looks outside
``data[pos:end]`` gets caught.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgmux.protocol import messages as m
from pgmux.protocol.errors import PROTOCOL_VIOLATION, PgmuxError
from pgmux.protocol.framing import FRONTEND_TYPES, BackendScanner, FrontendScanner

Z, S, X = ord("Z"), ord("S"), ord("X")
SPECIAL = frozenset(b"QSF")  # each earns a ReadyForQuery
NEUTRAL = frozenset(b"Hdcf")  # Flush and copy traffic: neither open nor close a batch
FRONTEND_KINDS = b"QPBDESHCdcfFX"
BACKEND_OTHER_KINDS = b"CTNE123nIsAGHWdcKtv"

# Message bodies are filled with bytes that look like headers (ReadyForQuery, ParameterStatus,
# Terminate), so a scanner that loses its place counts something it should not.
DECOY = b"Z\x00\x00\x00\x05IS\x00\x00\x00\x08a\x00b\x00X\x00\x00\x00\x04Q\x00\x00\x00\x05\x00"
STALE = b"Z\x00\x00\x00\x05T\xff\xff\xff\xff\x00\x00\x00\x04"

SETTINGS = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def frame(kind: int, body: bytes = b"") -> bytes:
    return bytes((kind,)) + struct.pack("!i", len(body) + 4) + body


def header(kind: int, length: int) -> bytes:
    return bytes((kind,)) + struct.pack("!i", length)


def filler(size: int) -> bytes:
    return (DECOY * (size // len(DECOY) + 1))[:size]


no_nul_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
body_size = st.one_of(
    st.integers(0, 40),
    st.integers(0, 2_000),
    st.integers(60_000, 300_000),  # "large": bigger than one 128 KiB read
)


# --- stream strategies ------------------------------------------------------------------------


@dataclass
class BackendStream:
    data: bytes = b""
    boundaries: set[int] = field(default_factory=lambda: {0})
    ready: list[int] = field(default_factory=list)  # status of each ReadyForQuery
    parameters: list[bytes] = field(default_factory=list)  # ParameterStatus bodies
    last_kind: int = 0  # type of the last message (did the server end with an ErrorResponse?)

    def add(self, message: bytes) -> None:
        self.data += message
        self.boundaries.add(len(self.data))
        self.last_kind = message[0]


@st.composite
def backend_message(draw: st.DrawFn, large: bool = True) -> tuple[bytes, int, bytes]:
    """(message, kind, body) of a well-formed backend message."""
    choice = draw(st.sampled_from(["Z", "S", "D", "C", "T", "N", "E", "other", "empty"]))
    if choice == "Z":
        status = draw(st.sampled_from(b"ITE"))
        return m.ready_for_query(status), Z, bytes((status,))
    if choice == "S":
        name, value = draw(no_nul_text), draw(no_nul_text)
        message = m.parameter_status(name, value)
        return message, S, message[5:]
    if choice == "D":
        size = draw(body_size if large else st.integers(0, 40))
        return frame(ord("D"), filler(size)), ord("D"), b""
    if choice == "C":
        return m.command_complete(draw(no_nul_text)), ord("C"), b""
    if choice == "T":
        names = draw(st.lists(no_nul_text, max_size=4))
        return m.row_description([(n, m.TYPE_OID_TEXT) for n in names]), ord("T"), b""
    if choice in ("N", "E"):
        text = draw(no_nul_text)
        error = PgmuxError("42601", text, severity="ERROR")
        notice = m.notice_response(text) if choice == "N" else m.error_response(error)
        return notice, ord(choice), b""
    if choice == "empty":  # length 4: a header with no body (ParseComplete, ...)
        kind = draw(st.sampled_from(b"123nIcS"))
        return frame(kind), kind, b""
    kind = draw(st.sampled_from(BACKEND_OTHER_KINDS))
    return frame(kind, draw(st.binary(max_size=30))), kind, b""


@st.composite
def backend_stream(draw: st.DrawFn, large: bool = True, max_size: int = 25) -> BackendStream:
    stream = BackendStream()
    for message, kind, body in draw(st.lists(backend_message(large), max_size=max_size)):
        stream.add(message)
        if kind == Z:
            stream.ready.append(body[0])
        elif kind == S:
            stream.parameters.append(body)
    return stream


@st.composite
def frontend_message(draw: st.DrawFn, large: bool = True) -> bytes:
    kind = draw(st.sampled_from(FRONTEND_KINDS))
    if kind == X:
        return frame(X)
    if kind == ord("Q"):
        return m.query(draw(no_nul_text))
    if kind in (ord("S"), ord("H"), ord("c")):
        return frame(kind)
    if kind == ord("d") and large:
        return frame(kind, filler(draw(body_size)))
    return frame(kind, draw(st.binary(max_size=30)))


@st.composite
def chunked(draw: st.DrawFn, data: bytes, max_cuts: int = 30) -> list[bytes]:
    """``data`` cut at random points (empty chunks included)."""
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=max_cuts)))
    edges = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


@st.composite
def padding(draw: st.DrawFn) -> tuple[bytes, bytes]:
    """Stale bytes before and after a chunk in the receive buffer."""
    before = draw(st.sampled_from([b"", b"\xff", STALE]))
    after = draw(st.sampled_from([STALE, b"\xff" * 8, b"\x00" * 8, b""]))
    return before, after


def in_buffer(chunk: bytes, pad: tuple[bytes, bytes], kind: str) -> tuple[memoryview, int, int]:
    before, after = pad
    raw = before + chunk + after
    buffer = memoryview(bytearray(raw) if kind == "bytearray" else raw)
    return buffer, len(before), len(before) + len(chunk)


# --- the callers, as the proxy drives the scanners ------------------------------------------


@dataclass
class BackendFacts:
    ready_count: int = 0
    status: int = 0
    parameters: list[bytes] = field(default_factory=list)


def scan_backend(
    scanner: BackendScanner,
    chunks: Sequence[bytes],
    pad: tuple[bytes, bytes] = (b"", b""),
    boundaries: set[int] | None = None,
    buffer_kind: str = "bytes",
) -> BackendFacts:
    """Feed ``chunks`` as ``ServerConnection._relay`` does; check ``at_boundary`` on the way."""
    facts = BackendFacts()
    fed = 0
    for chunk in chunks:
        view, pos, end = in_buffer(chunk, pad, buffer_kind)
        scanner.feed(view, pos, end)
        fed += len(chunk)
        if scanner.ready_count:
            facts.ready_count += scanner.ready_count
            facts.status = scanner.status
        facts.parameters += scanner.parameters
        scanner.parameters.clear()
        if boundaries is not None:
            assert scanner.at_boundary == (fed in boundaries)
    return facts


@dataclass
class Forwarded:
    data: bytearray = field(default_factory=bytearray)
    carry: bytes = b""
    closed: bool = False


def forward(
    scanner: FrontendScanner,
    chunks: Sequence[bytes],
    pad: tuple[bytes, bytes] = (b"", b""),
) -> Forwarded:
    """``ClientConnection._forward`` with a fake transport: what reaches the server."""
    out = Forwarded()
    for chunk in chunks:
        view, pos, end = in_buffer(out.carry + chunk, pad, "bytearray")
        out.carry = b""
        while True:
            stop = scanner.feed(view, pos, end)
            out.data += view[pos:stop]
            if stop == end:
                break
            length = scanner.stop_length
            if length == 0 or stop + length > end:
                out.carry = bytes(view[stop:end])
                break
            kind = view[stop]
            if kind == X:
                out.closed = True
                return out
            # Any other intercepted message: the caller handles it, accounts, and goes on.
            scanner.account(kind)
            out.data += view[stop : stop + length]
            pos = stop + length
    return out


def expected_frontend(messages: Sequence[bytes]) -> tuple[int, bool, bytes, bool]:
    """(pending, partial, bytes forwarded, closed) for a message sequence."""
    pending, partial = 0, False
    sent = b""
    for message in messages:
        kind = message[0]
        if kind == X:
            return pending, partial, sent, True
        if kind in SPECIAL:
            pending += 1
            partial = False
        elif kind not in NEUTRAL:
            partial = True
        sent += message
    return pending, partial, sent, False


# --- BackendScanner -------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_backend_any_chunking_gives_the_same_facts(data: st.DataObject) -> None:
    stream = data.draw(backend_stream())
    chunks = data.draw(chunked(stream.data))
    pad = data.draw(padding())
    kind = data.draw(st.sampled_from(["bytes", "bytearray"]))
    scanner = BackendScanner()
    facts = scan_backend(scanner, chunks, pad, stream.boundaries, kind)
    assert facts.ready_count == len(stream.ready)
    assert facts.status == (stream.ready[-1] if stream.ready else 0)
    assert facts.parameters == stream.parameters
    assert scanner.last_kind == stream.last_kind


@SETTINGS
@given(st.data())
def test_backend_one_byte_chunks(data: st.DataObject) -> None:
    stream = data.draw(backend_stream(large=False, max_size=15))
    chunks = [stream.data[i : i + 1] for i in range(len(stream.data))]
    pad = data.draw(padding())
    scanner = BackendScanner()
    facts = scan_backend(scanner, chunks, pad, stream.boundaries)
    assert facts.ready_count == len(stream.ready)
    assert facts.status == (stream.ready[-1] if stream.ready else 0)
    assert facts.parameters == stream.parameters
    assert scanner.last_kind == stream.last_kind


@SETTINGS
@given(st.data())
def test_backend_ready_count_is_per_feed(data: st.DataObject) -> None:
    """ready_count says how many ReadyForQuery ended in *this* chunk, not since the start."""
    stream = data.draw(backend_stream(large=False))
    cut = data.draw(st.integers(0, len(stream.data)))
    scanner = BackendScanner()
    scanner.feed(stream.data, 0, cut)
    first = scanner.ready_count
    scanner.feed(stream.data, cut, len(stream.data))
    assert first + scanner.ready_count == len(stream.ready)


def test_backend_counts_copy_in_responses_however_chunked() -> None:
    copy_in = frame(ord("G"), b"\x00\x00\x01\x00\x00")
    stream = m.command_complete("SELECT 1") + copy_in
    for cut in range(len(stream) + 1):
        scanner = BackendScanner()
        scanner.feed(stream, 0, cut)
        first = scanner.copy_in
        scanner.feed(stream, cut, len(stream))
        assert first + scanner.copy_in == 1, cut
        assert scanner.ready_count == 0


def test_backend_header_split_over_three_reads_ignores_stale_bytes() -> None:
    """Regression: the rest of a split header was read past ``end`` from the stale buffer."""
    stream = m.command_complete("SELECT 1") + m.ready_for_query(m.TX_IN_TRANSACTION)
    buffer = bytearray(b"\xff" * 64)
    scanner = BackendScanner()
    total = 0
    cuts = [0, len(stream) - 5, len(stream) - 3, len(stream) - 1, len(stream)]
    for a, b in itertools.pairwise(cuts):
        buffer[: b - a] = stream[a:b]
        scanner.feed(memoryview(buffer), 0, b - a)
        total += scanner.ready_count
    assert (total, scanner.status) == (1, m.TX_IN_TRANSACTION)
    assert scanner.at_boundary


def test_backend_large_data_row_costs_no_copy() -> None:
    scanner = BackendScanner()
    row = frame(ord("D"), filler(10_000_000))
    scanner.feed(row, 0, 1000)
    assert scanner.skip == len(row) - 1000
    scanner.feed(row, 1000, len(row) - 1)
    assert not scanner._body  # a skipped body is never collected
    scanner.feed(row + m.ready_for_query(), len(row) - 1, len(row) + 6)
    assert (scanner.ready_count, scanner.status) == (1, m.TX_IDLE)


def test_backend_feed_on_empty_range_is_a_no_op() -> None:
    scanner = BackendScanner()
    scanner.feed(b"Z\x00\x00", 0, 0)
    assert scanner.ready_count == 0 and scanner.at_boundary


bad_backend_length = st.one_of(st.integers(-(2**31), 3), st.integers(1001, 2**31 - 1))


@SETTINGS
@given(st.data())
def test_backend_bad_length_raises_however_chunked(data: st.DataObject) -> None:
    stream = data.draw(backend_stream(large=False, max_size=6))
    kind = data.draw(st.sampled_from(b"ZSDCE"))
    bad = stream.data + header(kind, data.draw(bad_backend_length))
    chunks = data.draw(chunked(bad))
    with pytest.raises(PgmuxError) as caught:
        scan_backend(BackendScanner(max_length=1000), chunks, data.draw(padding()))
    assert caught.value.sqlstate == PROTOCOL_VIOLATION


@SETTINGS
@given(st.data())
def test_backend_ready_for_query_of_wrong_length_raises(data: st.DataObject) -> None:
    stream = data.draw(backend_stream(large=False, max_size=6))
    length = data.draw(st.integers(4, 300).filter(lambda n: n != 5))
    bad = stream.data + header(Z, length) + b"I" * (length - 4)
    chunks = data.draw(chunked(bad))
    with pytest.raises(PgmuxError) as caught:
        scan_backend(BackendScanner(), chunks, data.draw(padding()))
    assert caught.value.sqlstate == PROTOCOL_VIOLATION


@SETTINGS
@given(st.binary(max_size=300), st.data())
def test_backend_garbage_raises_only_protocol_violation(raw: bytes, data: st.DataObject) -> None:
    chunks = data.draw(chunked(raw, max_cuts=10))
    try:
        scan_backend(BackendScanner(max_length=200), chunks, data.draw(padding()))
    except PgmuxError as error:
        assert error.sqlstate == PROTOCOL_VIOLATION


# --- FrontendScanner ------------------------------------------------------------------------


@SETTINGS
@given(st.data())
def test_frontend_any_chunking_gives_the_same_facts(data: st.DataObject) -> None:
    messages = data.draw(st.lists(frontend_message(), max_size=25))
    stream = b"".join(messages)
    scanner = FrontendScanner()
    out = forward(scanner, data.draw(chunked(stream)), data.draw(padding()))
    pending, partial, sent, closed = expected_frontend(messages)
    assert (scanner.pending, scanner.partial) == (pending, partial)
    assert out.closed == closed
    assert bytes(out.data) == sent  # forwarded verbatim, up to Terminate
    if not closed:
        assert out.carry == b"" and scanner.skip == 0
        assert scanner.idle == (pending == 0 and not partial)


@SETTINGS
@given(st.data())
def test_frontend_one_byte_chunks(data: st.DataObject) -> None:
    messages = data.draw(st.lists(frontend_message(large=False), max_size=15))
    stream = b"".join(messages)
    scanner = FrontendScanner()
    out = forward(scanner, [stream[i : i + 1] for i in range(len(stream))], data.draw(padding()))
    pending, partial, sent, closed = expected_frontend(messages)
    assert (scanner.pending, scanner.partial, out.closed) == (pending, partial, closed)
    assert bytes(out.data) == sent


@SETTINGS
@given(st.data())
def test_frontend_intercepted_messages_are_accounted_the_same(data: st.DataObject) -> None:
    """With more types intercepted (handled by the caller, then ``account``), same counts."""
    intercept = data.draw(st.sets(st.sampled_from(FRONTEND_KINDS))) | {X}
    messages = data.draw(st.lists(frontend_message(large=False), max_size=20))
    stream = b"".join(messages)
    scanner = FrontendScanner(intercept=frozenset(intercept))
    out = forward(scanner, data.draw(chunked(stream)), data.draw(padding()))
    pending, partial, sent, closed = expected_frontend(messages)
    assert (scanner.pending, scanner.partial, out.closed) == (pending, partial, closed)
    assert bytes(out.data) == sent


def test_frontend_terminate_split_across_reads_is_carried() -> None:
    scanner = FrontendScanner()
    query = m.query("SELECT 1")
    out = forward(scanner, [query + b"X\x00", b"\x00", b"\x00\x04"])
    assert out.closed and bytes(out.data) == query and scanner.pending == 1


def test_frontend_stop_length_reports_the_whole_intercepted_message() -> None:
    scanner = FrontendScanner(intercept=frozenset(b"QX"))
    data = m.SYNC_MESSAGE + m.query("SELECT 1")
    stop = scanner.feed(data, 0, len(data) - 3)
    assert stop == len(m.SYNC_MESSAGE)
    assert scanner.stop_length == len(m.query("SELECT 1"))
    assert scanner.feed(data, 0, 3) == 0 and scanner.stop_length == 0  # a split header


def test_frontend_partial_closed_only_by_sync() -> None:
    scanner = FrontendScanner()
    batch = frame(ord("P"), b"\x00SELECT 1\x00\x00\x00") + frame(ord("B"), b"\x00" * 8)
    batch += frame(ord("H"))
    assert scanner.feed(batch, 0, len(batch)) == len(batch)
    assert scanner.partial and scanner.pending == 0 and not scanner.idle
    scanner.feed(m.SYNC_MESSAGE, 0, 5)
    assert not scanner.partial and scanner.pending == 1
    scanner.reset()
    assert scanner.idle


def _state(scanner: FrontendScanner) -> tuple[object, ...]:
    return (
        scanner.pending, scanner.partial, scanner.in_copy, scanner.copy_syncs, scanner.executes,
        scanner.lone_execute,
    )  # fmt: skip


@pytest.mark.parametrize("copying", [False, True], ids=["normal", "copy-in"])
def test_frontend_account_matches_feed(copying: bool) -> None:
    for kind in FRONTEND_KINDS:
        fed, accounted = FrontendScanner(intercept=frozenset()), FrontendScanner()
        for scanner in (fed, accounted):
            scanner.feed(frame(ord("E")) + m.SYNC_MESSAGE, 0, 10)
            if copying:
                assert scanner.copy_in_started() == 1
        fed.feed(frame(kind), 0, 5)
        accounted.account(kind)
        if kind != X:
            assert _state(fed) == _state(accounted), chr(kind)


# libpq's PQsendQueryParams("COPY ... FROM STDIN"), then PQputCopyData and PQputCopyEnd.
EXECUTE_COPY = (
    frame(ord("P"), b"\x00COPY t FROM STDIN\x00\x00\x00")
    + frame(ord("B"), b"\x00\x00" + b"\x00" * 6)
    + frame(ord("D"), b"P\x00")
    + frame(ord("E"), b"\x00\x00\x00\x00\x00")
)
EXTENDED_COPY = EXECUTE_COPY + m.SYNC_MESSAGE
COPY_DATA = frame(ord("d"), b"1\tone\n")
COPY_DONE = frame(ord("c"))
SELECT_BATCH = frame(ord("P"), b"\x00SELECT 1\x00\x00\x00") + frame(ord("E"), b"\x00" * 5)


def _fed(stream: bytes) -> FrontendScanner:
    scanner = FrontendScanner()
    assert scanner.feed(stream, 0, len(stream)) == len(stream)
    return scanner


def test_frontend_sync_ignored_in_copy_in_mode_is_taken_back() -> None:
    scanner = _fed(EXTENDED_COPY)
    assert scanner.pending == 1  # the Sync behind the Execute, as the scanner sees it
    assert scanner.copy_in_started() == 1  # CopyInResponse: the server ignores that Sync
    # The batch stays open until the Sync after CopyDone: the client is not idle mid-copy.
    assert (scanner.pending, scanner.partial, scanner.in_copy) == (0, True, True)
    assert not scanner.idle
    rest = COPY_DATA + COPY_DATA + COPY_DONE + m.SYNC_MESSAGE
    scanner.feed(rest, 0, len(rest))
    assert (scanner.pending, scanner.partial, scanner.in_copy) == (1, False, False)


def test_frontend_copy_in_started_before_the_sync_arrives() -> None:
    scanner = _fed(EXECUTE_COPY)
    assert scanner.copy_in_started() == 0 and scanner.in_copy and scanner.partial
    rest = m.SYNC_MESSAGE + COPY_DATA + COPY_DONE + m.SYNC_MESSAGE
    scanner.feed(rest, 0, len(rest))
    assert scanner.pending == 1


def test_frontend_copy_by_simple_query_keeps_its_own_ready_for_query() -> None:
    scanner = _fed(m.query("COPY t FROM STDIN"))
    assert scanner.copy_in_started() == 0 and scanner.pending == 1 and not scanner.in_copy
    rest = COPY_DATA + COPY_DONE
    scanner.feed(rest, 0, len(rest))
    assert scanner.pending == 1


def test_frontend_ready_for_query_in_the_same_read_counts_as_answered() -> None:
    """Requests before the COPY must be answered first; ``answered`` says which already are."""
    scanner = _fed(m.query("SELECT 1") + SELECT_BATCH + m.SYNC_MESSAGE + EXTENDED_COPY)
    assert scanner.pending == 3
    assert scanner.copy_in_started() == 0 and scanner.pending == 3  # not sure: nothing back
    assert scanner.copy_in_started(answered=2) == 1 and scanner.pending == 2


# Sequences where a CopyInResponse must not take anything back: a count too low would release
# the server while replies are still coming. Each leaves the count as it was.
NOT_TAKEN_BACK = {
    # copy data sent before the CopyInResponse came back: the Syncs may not be the ignored ones
    "data before the response": EXTENDED_COPY + COPY_DATA + COPY_DONE,
    # a second Execute in the batch: the response may be the first one's
    "two executes in a batch": EXECUTE_COPY + SELECT_BATCH + m.SYNC_MESSAGE,
    # a Query behind the COPY's Sync
    "a query behind": EXTENDED_COPY + m.query("SELECT 1"),
    # a Sync behind CopyDone, sent blind: the server answers it
    "a sync after copy done": EXTENDED_COPY + COPY_DATA + COPY_DONE + m.SYNC_MESSAGE,
}


@pytest.mark.parametrize("case", list(NOT_TAKEN_BACK))
def test_frontend_copy_in_takes_nothing_back_when_unsure(case: str) -> None:
    scanner = _fed(NOT_TAKEN_BACK[case])
    before = _state(scanner)
    assert scanner.copy_in_started() == 0
    assert _state(scanner) == before


def test_frontend_a_sync_between_copy_data_stays_counted() -> None:
    """The server ignores it too, unless the copy failed; counted, it can only hold the server."""
    scanner = _fed(EXTENDED_COPY)
    scanner.copy_in_started()
    rest = COPY_DATA + m.SYNC_MESSAGE + COPY_DONE + m.SYNC_MESSAGE
    scanner.feed(rest, 0, len(rest))
    assert (scanner.pending, scanner.in_copy) == (2, False)


def test_frontend_a_message_that_aborts_the_copy_ends_the_window() -> None:
    scanner = _fed(EXTENDED_COPY)
    scanner.copy_in_started()
    stream = m.query("SELECT 1") + m.SYNC_MESSAGE
    scanner.feed(stream, 0, len(stream))
    assert (scanner.in_copy, scanner.pending) == (False, 2)


bad_frontend_length = st.one_of(st.integers(-(2**31), 3), st.integers(5001, 2**31 - 1))


@SETTINGS
@given(st.data())
def test_frontend_bad_length_raises_however_chunked(data: st.DataObject) -> None:
    messages = data.draw(st.lists(frontend_message(large=False), max_size=6))
    messages = [msg for msg in messages if msg[0] != X]
    kind = data.draw(st.sampled_from(FRONTEND_KINDS))  # Terminate too: checked before intercept
    length = data.draw(bad_frontend_length)
    stream = b"".join(messages) + header(kind, length)
    with pytest.raises(PgmuxError) as caught:
        forward(FrontendScanner(max_length=5000), data.draw(chunked(stream)), data.draw(padding()))
    assert caught.value.sqlstate == PROTOCOL_VIOLATION
    assert str(length) in caught.value.message


@SETTINGS
@given(st.data())
def test_frontend_invalid_type_raises_however_chunked(data: st.DataObject) -> None:
    messages = data.draw(st.lists(frontend_message(large=False), max_size=6))
    messages = [msg for msg in messages if msg[0] != X]
    kind = data.draw(st.integers(0, 255).filter(lambda k: k not in FRONTEND_TYPES))
    stream = b"".join(messages) + frame(kind, data.draw(st.binary(max_size=10)))
    with pytest.raises(PgmuxError) as caught:
        forward(FrontendScanner(), data.draw(chunked(stream)), data.draw(padding()))
    assert caught.value.sqlstate == PROTOCOL_VIOLATION


@SETTINGS
@given(st.binary(max_size=300), st.data())
def test_frontend_garbage_raises_only_protocol_violation(raw: bytes, data: st.DataObject) -> None:
    chunks = data.draw(chunked(raw, max_cuts=10))
    try:
        forward(FrontendScanner(max_length=200), chunks, data.draw(padding()))
    except PgmuxError as error:
        assert error.sqlstate == PROTOCOL_VIOLATION


def test_frontend_types_are_the_documented_ones() -> None:
    assert set(FRONTEND_KINDS) | {ord("p")} == FRONTEND_TYPES
