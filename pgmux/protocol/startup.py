"""Startup-phase packets: StartupMessage, SSLRequest, GSSENCRequest and CancelRequest.

These packets have no type byte, only a length and a 32-bit code. :func:`parse_startup_packet`
takes the bytes a client sent so far and returns the first complete packet (and how many bytes it
used) or ``None`` when more bytes are needed. Anything malformed raises a FATAL
:class:`PgmuxError` with SQLSTATE 08P01, whose message says what was wrong, because that is what
the client will read.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from pgmux.protocol.errors import FEATURE_NOT_SUPPORTED, PROTOCOL_VIOLATION, PgmuxError

# PostgreSQL's MAX_STARTUP_PACKET_LENGTH: a longer startup packet is refused before it is read.
MAX_STARTUP_PACKET_LENGTH = 10000

PROTOCOL_3_0 = 196608  # 3 << 16
CANCEL_REQUEST_CODE = 80877102
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104

_HEAD = struct.Struct("!ii")


@dataclass(frozen=True)
class StartupMessage:
    protocol: int
    parameters: dict[str, str] = field(default_factory=dict)

    @property
    def minor_version(self) -> int:
        return self.protocol & 0xFFFF


@dataclass(frozen=True)
class SSLRequest:
    pass


@dataclass(frozen=True)
class GSSENCRequest:
    pass


@dataclass(frozen=True)
class CancelRequest:
    process_id: int
    secret_key: int


StartupPacket = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest


def _violation(text: str) -> PgmuxError:
    return PgmuxError(PROTOCOL_VIOLATION, text)


def parse_startup_packet(data: bytes | bytearray) -> tuple[StartupPacket, int] | None:
    """The first complete startup packet in ``data`` and its length, or None if incomplete."""
    if len(data) < 8:
        if len(data) >= 4:
            _check_length(struct.unpack_from("!i", data, 0)[0])
        return None
    length, code = _HEAD.unpack_from(data, 0)
    _check_length(length)
    if len(data) < length:
        return None
    body = bytes(data[8:length])
    return _decode(code, length, body), length


def _check_length(length: int) -> None:
    if length < 8 or length > MAX_STARTUP_PACKET_LENGTH:
        raise _violation(
            f"invalid startup packet length {length}: this does not look like a PostgreSQL "
            "client (check that the client connects to pgmux with the PostgreSQL protocol)"
        )


def _decode(code: int, length: int, body: bytes) -> StartupPacket:
    if code == SSL_REQUEST_CODE and length == 8:
        return SSLRequest()
    if code == GSSENC_REQUEST_CODE and length == 8:
        return GSSENCRequest()
    if code == CANCEL_REQUEST_CODE and length == 16:
        pid, key = struct.unpack("!iI", body)
        return CancelRequest(pid, key)
    major = code >> 16
    if major != 3:
        raise PgmuxError(
            FEATURE_NOT_SUPPORTED,
            f"unsupported frontend protocol {major}.{code & 0xFFFF}: server supports 3.0 to 3.0",
        )
    return StartupMessage(code, _decode_parameters(body))


def _decode_parameters(body: bytes) -> dict[str, str]:
    if not body.endswith(b"\x00"):
        raise _violation("invalid startup packet layout: expected terminator as last byte")
    pairs = body[:-1]
    if pairs and not pairs.endswith(b"\x00"):
        raise _violation("invalid startup packet layout: expected terminator as last byte")
    parts = pairs.split(b"\x00")[:-1]
    if len(parts) % 2:
        raise _violation("invalid startup packet layout: a parameter name has no value")
    params: dict[str, str] = {}
    for raw_name, raw_value in zip(parts[::2], parts[1::2], strict=True):
        try:
            name, value = raw_name.decode(), raw_value.decode()
        except UnicodeDecodeError:
            raise _violation("invalid startup packet: parameter is not valid UTF-8") from None
        if not name:
            raise _violation("invalid startup packet layout: empty parameter name")
        params[name] = value
    return params


def startup_message(parameters: dict[str, str], protocol: int = PROTOCOL_3_0) -> bytes:
    """Encode a StartupMessage (pgmux sends one to each server it logs in to)."""
    body = b"".join(k.encode() + b"\x00" + v.encode() + b"\x00" for k, v in parameters.items())
    body += b"\x00"
    return struct.pack("!ii", len(body) + 8, protocol) + body


def cancel_request(process_id: int, secret_key: int) -> bytes:
    return struct.pack("!iiiI", 16, CANCEL_REQUEST_CODE, process_id, secret_key)


def negotiate_protocol_version(minor: int, unsupported: list[str]) -> bytes:
    """NegotiateProtocolVersion: the newest minor version pgmux speaks and options it ignored."""
    body = struct.pack("!ii", minor, len(unsupported))
    body += b"".join(name.encode() + b"\x00" for name in unsupported)
    return b"v" + struct.pack("!i", len(body) + 4) + body
