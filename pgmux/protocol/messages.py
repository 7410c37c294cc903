"""Encoding and decoding of the PostgreSQL v3 messages pgmux builds or inspects.

Only the messages that drive pooling and login are decoded here; everything else is forwarded as
the bytes received (see :mod:`pgmux.protocol.framing`). Builders return complete messages
(type byte, length, body) as ``bytes``. Decoders take a message *body* (after the 5-byte header)
and raise :class:`ValueError` on malformed input, which callers turn into a protocol error.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping, Sequence

from pgmux.protocol.errors import PgmuxError

_I32 = struct.Struct("!i")
_I16 = struct.Struct("!h")
_HEADER = struct.Struct("!ci")

# Backend message types.
AUTHENTICATION = b"R"
BACKEND_KEY_DATA = b"K"
BIND_COMPLETE = b"2"
CLOSE_COMPLETE = b"3"
COMMAND_COMPLETE = b"C"
COPY_IN_RESPONSE = b"G"
COPY_OUT_RESPONSE = b"H"
COPY_BOTH_RESPONSE = b"W"
DATA_ROW = b"D"
EMPTY_QUERY_RESPONSE = b"I"
ERROR_RESPONSE = b"E"
NEGOTIATE_PROTOCOL_VERSION = b"v"
NO_DATA = b"n"
NOTICE_RESPONSE = b"N"
NOTIFICATION_RESPONSE = b"A"
PARAMETER_DESCRIPTION = b"t"
PARAMETER_STATUS = b"S"
PARSE_COMPLETE = b"1"
READY_FOR_QUERY = b"Z"
ROW_DESCRIPTION = b"T"

# Frontend message types.
BIND = b"B"
CLOSE = b"C"
COPY_DATA = b"d"
COPY_DONE = b"c"
COPY_FAIL = b"f"
DESCRIBE = b"D"
EXECUTE = b"E"
FLUSH = b"H"
FUNCTION_CALL = b"F"
PARSE = b"P"
PASSWORD_MESSAGE = b"p"  # also SASLInitialResponse and SASLResponse
QUERY = b"Q"
SYNC = b"S"
TERMINATE = b"X"

# Authentication request codes (the Int32 after 'R').
AUTH_OK = 0
AUTH_KERBEROS_V5 = 2
AUTH_CLEARTEXT_PASSWORD = 3
AUTH_MD5_PASSWORD = 5
AUTH_GSS = 7
AUTH_GSS_CONTINUE = 8
AUTH_SSPI = 9
AUTH_SASL = 10
AUTH_SASL_CONTINUE = 11
AUTH_SASL_FINAL = 12

# Transaction status byte of ReadyForQuery.
TX_IDLE = ord("I")
TX_IN_TRANSACTION = ord("T")
TX_FAILED = ord("E")

TYPE_OID_TEXT = 25
TYPE_OID_INT8 = 20
TYPE_OID_INT4 = 23


def message(type_byte: bytes, body: bytes = b"") -> bytes:
    """Frame ``body`` as a message of ``type_byte``."""
    return _HEADER.pack(type_byte, len(body) + 4) + body


def cstring(text: str) -> bytes:
    return text.encode() + b"\x00"


# --- backend messages pgmux writes itself ---------------------------------------------------


def authentication(code: int, payload: bytes = b"") -> bytes:
    return message(AUTHENTICATION, _I32.pack(code) + payload)


AUTHENTICATION_OK = authentication(AUTH_OK)
READY_FOR_QUERY_IDLE = message(READY_FOR_QUERY, b"I")


def authentication_sasl(mechanisms: Sequence[str]) -> bytes:
    return authentication(AUTH_SASL, b"".join(cstring(m) for m in mechanisms) + b"\x00")


def parameter_status(name: str, value: str) -> bytes:
    return message(PARAMETER_STATUS, cstring(name) + cstring(value))


def backend_key_data(pid: int, secret: int) -> bytes:
    return message(BACKEND_KEY_DATA, struct.pack("!iI", pid, secret))


def ready_for_query(status: int = TX_IDLE) -> bytes:
    return message(READY_FOR_QUERY, bytes((status,)))


def command_complete(tag: str) -> bytes:
    return message(COMMAND_COMPLETE, cstring(tag))


def empty_query_response() -> bytes:
    return message(EMPTY_QUERY_RESPONSE)


def error_fields(
    severity: str,
    sqlstate: str,
    text: str,
    *,
    detail: str | None = None,
    hint: str | None = None,
) -> bytes:
    parts = [b"S", cstring(severity), b"V", cstring(severity), b"C", cstring(sqlstate)]
    parts += [b"M", cstring(text)]
    if detail:
        parts += [b"D", cstring(detail)]
    if hint:
        parts += [b"H", cstring(hint)]
    return b"".join(parts) + b"\x00"


def error_response(error: PgmuxError) -> bytes:
    fields = error_fields(
        error.severity, error.sqlstate, error.message, detail=error.detail, hint=error.hint
    )
    return message(ERROR_RESPONSE, fields)


def notice_response(text: str, *, severity: str = "NOTICE", sqlstate: str = "00000") -> bytes:
    return message(NOTICE_RESPONSE, error_fields(severity, sqlstate, text))


def row_description(columns: Sequence[tuple[str, int]]) -> bytes:
    """RowDescription for text-format columns given as ``(name, type_oid)``."""
    body = [_I16.pack(len(columns))]
    for name, type_oid in columns:
        size = 8 if type_oid == TYPE_OID_INT8 else -1
        body.append(cstring(name) + struct.pack("!ihihih", 0, 0, type_oid, size, -1, 0))
    return message(ROW_DESCRIPTION, b"".join(body))


def data_row(values: Iterable[object]) -> bytes:
    body = []
    count = 0
    for value in values:
        count += 1
        if value is None:
            body.append(_I32.pack(-1))
        else:
            encoded = str(value).encode()
            body.append(_I32.pack(len(encoded)) + encoded)
    return message(DATA_ROW, _I16.pack(count) + b"".join(body))


# --- frontend messages pgmux writes (to servers) --------------------------------------------


def query(sql: str) -> bytes:
    return message(QUERY, cstring(sql))


def password_message(payload: bytes) -> bytes:
    return message(PASSWORD_MESSAGE, payload)


def sasl_initial_response(mechanism: str, payload: bytes) -> bytes:
    return message(PASSWORD_MESSAGE, cstring(mechanism) + _I32.pack(len(payload)) + payload)


TERMINATE_MESSAGE = message(TERMINATE)
SYNC_MESSAGE = message(SYNC)


# --- decoders ---------------------------------------------------------------------------------


def split_cstrings(body: bytes | memoryview) -> list[str]:
    """Split a run of NUL-terminated strings; a trailing unterminated part is an error."""
    data = bytes(body)
    if data and not data.endswith(b"\x00"):
        raise ValueError("string field is not NUL-terminated")
    return [part.decode("utf-8", "replace") for part in data.split(b"\x00")[:-1]]


def parse_parameter_status(body: bytes | memoryview) -> tuple[str, str]:
    parts = split_cstrings(body)
    if len(parts) != 2:
        raise ValueError("ParameterStatus must hold a name and a value")
    return parts[0], parts[1]


def parse_error_fields(body: bytes | memoryview) -> dict[str, str]:
    """Fields of an ErrorResponse or NoticeResponse body, keyed by their one-letter code."""
    fields: dict[str, str] = {}
    data = bytes(body)
    pos = 0
    while pos < len(data) and data[pos] != 0:
        end = data.find(b"\x00", pos + 1)
        if end < 0:
            raise ValueError("error field is not NUL-terminated")
        fields[chr(data[pos])] = data[pos + 1 : end].decode("utf-8", "replace")
        pos = end + 1
    return fields


def parse_authentication(body: bytes | memoryview) -> tuple[int, bytes]:
    if len(body) < 4:
        raise ValueError("Authentication message too short")
    return _I32.unpack_from(body, 0)[0], bytes(body[4:])


def parse_sasl_mechanisms(payload: bytes) -> list[str]:
    return [m for m in split_cstrings(payload) if m]


def parse_sasl_initial_response(body: bytes | memoryview) -> tuple[str, bytes]:
    """(mechanism, initial client response) of a SASLInitialResponse body."""
    data = bytes(body)
    end = data.find(b"\x00")
    if end < 0 or len(data) < end + 5:
        raise ValueError("malformed SASLInitialResponse")
    mechanism = data[:end].decode("ascii", "replace")
    (length,) = _I32.unpack_from(data, end + 1)
    payload = data[end + 5 :]
    if length == -1 and not payload:  # -1: no initial response, and then nothing may follow
        pass
    elif length != len(payload):
        raise ValueError("SASLInitialResponse length does not match its payload")
    return mechanism, payload


def parse_password(body: bytes | memoryview) -> bytes:
    data = bytes(body)
    if not data.endswith(b"\x00"):
        raise ValueError("password is not NUL-terminated")
    return data[:-1]


def parse_backend_key_data(body: bytes | memoryview) -> tuple[int, int]:
    if len(body) != 8:
        raise ValueError("BackendKeyData must be 8 bytes")
    pid, secret = struct.unpack("!iI", body)
    return int(pid), int(secret)


def parse_data_row(body: bytes | memoryview) -> list[str | None]:
    """The text values of a DataRow body (None for NULL)."""
    data = bytes(body)
    if len(data) < 2:
        raise ValueError("DataRow too short")
    (count,) = _I16.unpack_from(data, 0)
    pos = 2
    values: list[str | None] = []
    for _ in range(count):
        if len(data) < pos + 4:
            raise ValueError("DataRow truncated")
        (length,) = _I32.unpack_from(data, pos)
        pos += 4
        if length < 0:
            values.append(None)
            continue
        if len(data) < pos + length:
            raise ValueError("DataRow truncated")
        values.append(data[pos : pos + length].decode("utf-8", "replace"))
        pos += length
    return values


def parse_query(body: bytes | memoryview) -> str:
    data = bytes(body)
    end = data.find(b"\x00")
    if end < 0:
        raise ValueError("query text is not NUL-terminated")
    return data[:end].decode("utf-8", "replace")


def parameter_status_block(params: Mapping[str, str]) -> bytes:
    return b"".join(parameter_status(k, v) for k, v in params.items())
