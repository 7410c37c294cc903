"""Startup packets on plain bytes: round trips, incomplete input, only PgmuxError for garbage."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgmux.protocol.errors import FEATURE_NOT_SUPPORTED, PROTOCOL_VIOLATION, PgmuxError
from pgmux.protocol.startup import (
    CANCEL_REQUEST_CODE,
    GSSENC_REQUEST_CODE,
    MAX_STARTUP_PACKET_LENGTH,
    PROTOCOL_3_0,
    SSL_REQUEST_CODE,
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    cancel_request,
    negotiate_protocol_version,
    parse_startup_packet,
    startup_message,
)

SETTINGS = settings(max_examples=100, deadline=None)

text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=20)
parameters = st.dictionaries(text.filter(bool), text, max_size=8)


def packet(code: int, body: bytes = b"", length: int | None = None) -> bytes:
    size = len(body) + 8 if length is None else length
    return struct.pack("!ii", size, code) + body


def violation(data: bytes) -> PgmuxError:
    with pytest.raises(PgmuxError) as caught:
        parse_startup_packet(data)
    return caught.value


# --- round trips ------------------------------------------------------------------------------


@SETTINGS
@given(parameters, st.integers(0, 0xFFFF), st.binary(max_size=20))
def test_startup_message_round_trip(params: dict[str, str], minor: int, rest: bytes) -> None:
    protocol = (3 << 16) | minor
    data = startup_message(params, protocol)
    parsed = parse_startup_packet(data + rest)  # what follows belongs to the next packet
    assert parsed == (StartupMessage(protocol, params), len(data))
    assert isinstance(parsed[0], StartupMessage) and parsed[0].minor_version == minor
    assert parse_startup_packet(bytearray(data)) == parsed


@SETTINGS
@given(parameters)
def test_startup_message_incomplete_is_none(params: dict[str, str]) -> None:
    data = startup_message(params)
    for cut in range(len(data)):
        assert parse_startup_packet(data[:cut]) is None


def test_startup_message_layout() -> None:
    data = startup_message({"user": "alice", "database": "app"})
    assert data == b"\x00\x00\x00\x21\x00\x03\x00\x00user\x00alice\x00database\x00app\x00\x00"


def test_empty_parameter_list() -> None:
    assert parse_startup_packet(startup_message({})) == (StartupMessage(PROTOCOL_3_0, {}), 9)


def test_duplicate_parameter_keeps_the_last() -> None:
    data = packet(PROTOCOL_3_0, b"user\x00a\x00user\x00b\x00\x00")
    assert parse_startup_packet(data) == (StartupMessage(PROTOCOL_3_0, {"user": "b"}), len(data))


def test_ssl_and_gssenc_requests() -> None:
    assert parse_startup_packet(packet(SSL_REQUEST_CODE)) == (SSLRequest(), 8)
    assert parse_startup_packet(packet(GSSENC_REQUEST_CODE)) == (GSSENCRequest(), 8)
    # The client may pipeline: only the first packet is returned.
    assert parse_startup_packet(packet(SSL_REQUEST_CODE) + b"\x16\x03") == (SSLRequest(), 8)


@SETTINGS
@given(st.integers(-(2**31), 2**31 - 1), st.integers(0, 2**32 - 1))
def test_cancel_request_round_trip(pid: int, key: int) -> None:
    data = cancel_request(pid, key)
    assert struct.unpack_from("!ii", data) == (16, CANCEL_REQUEST_CODE)
    assert parse_startup_packet(data) == (CancelRequest(pid, key), 16)
    assert parse_startup_packet(data[:15]) is None


@pytest.mark.parametrize("size", [0, 1, 2, 3])
def test_fewer_than_four_bytes_is_none(size: int) -> None:
    assert parse_startup_packet(b"\x00" * size) is None


def test_length_is_checked_as_soon_as_it_is_known() -> None:
    assert violation(b"\x00\x00\x00\x04").sqlstate == PROTOCOL_VIOLATION
    assert violation(struct.pack("!i", MAX_STARTUP_PACKET_LENGTH + 1)).sqlstate == (
        PROTOCOL_VIOLATION
    )
    assert parse_startup_packet(struct.pack("!i", MAX_STARTUP_PACKET_LENGTH)) is None


# --- malformed packets --------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        packet(PROTOCOL_3_0, length=7),
        packet(PROTOCOL_3_0, length=-1),
        packet(PROTOCOL_3_0, length=MAX_STARTUP_PACKET_LENGTH + 1),
        packet(PROTOCOL_3_0, b""),  # no terminator at all
        packet(PROTOCOL_3_0, b"user\x00alice"),  # value not terminated
        packet(PROTOCOL_3_0, b"user\x00alice\x00"),  # list not terminated
        packet(PROTOCOL_3_0, b"user\x00\x00"),  # a name without a value
        packet(PROTOCOL_3_0, b"\x00x\x00\x00"),  # an empty name
        packet(PROTOCOL_3_0, b"us\xffer\x00x\x00\x00"),  # not UTF-8
        packet(PROTOCOL_3_0, b"user\x00\xc3\x00\x00"),
    ],
)
def test_malformed_startup_message(data: bytes) -> None:
    error = violation(data)
    assert error.sqlstate == PROTOCOL_VIOLATION
    assert error.severity == "FATAL"


@pytest.mark.parametrize(
    "code",
    [
        2 << 16,  # protocol 2.0
        (4 << 16) | 0,
        1234 << 16,
        -1,
        SSL_REQUEST_CODE,  # SSLRequest with a body: not an SSLRequest, so an unknown protocol
    ],
)
def test_unsupported_protocol(code: int) -> None:
    error = violation(packet(code, b"user\x00a\x00\x00"))
    assert error.sqlstate == FEATURE_NOT_SUPPORTED
    assert "unsupported frontend protocol" in error.message


def test_cancel_request_with_the_wrong_length_is_refused() -> None:
    with pytest.raises(PgmuxError):
        parse_startup_packet(packet(CANCEL_REQUEST_CODE, b"\x00" * 4))


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=80))
def test_garbage_raises_only_pgmux_error(data: bytes) -> None:
    try:
        result = parse_startup_packet(data)
    except PgmuxError as error:
        assert error.sqlstate in (PROTOCOL_VIOLATION, FEATURE_NOT_SUPPORTED)
        return
    if result is not None:
        _, used = result
        assert 8 <= used <= len(data)


@SETTINGS
@given(st.integers(-(2**31), 2**31 - 1), st.integers(-(2**31), 2**31 - 1), st.binary(max_size=60))
def test_lying_lengths_raise_only_pgmux_error(length: int, code: int, body: bytes) -> None:
    """A header whose length says anything at all about the body that follows."""
    try:
        result = parse_startup_packet(struct.pack("!ii", length, code) + body)
    except PgmuxError:
        return
    assert result is None or result[1] == length


# --- NegotiateProtocolVersion ----------------------------------------------------------------


@SETTINGS
@given(st.integers(0, 0xFFFF), st.lists(text, max_size=5))
def test_negotiate_protocol_version(minor: int, unsupported: list[str]) -> None:
    data = negotiate_protocol_version(minor, unsupported)
    assert data[:1] == b"v"
    (length,) = struct.unpack_from("!i", data, 1)
    assert length == len(data) - 1
    newest, count = struct.unpack_from("!ii", data, 5)
    assert (newest, count) == (minor, len(unsupported))
    names = data[13:].split(b"\x00")
    assert names[-1] == b"" and [n.decode() for n in names[:-1]] == unsupported


def test_negotiate_protocol_version_layout() -> None:
    assert negotiate_protocol_version(0, ["_pq_.x"]) == (
        b"v\x00\x00\x00\x13\x00\x00\x00\x00\x00\x00\x00\x01_pq_.x\x00"
    )
