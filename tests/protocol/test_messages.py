"""Message builders and decoders on plain bytes: round trips, and ValueError for anything else."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgmux.protocol import messages as m
from pgmux.protocol.errors import PgmuxError, ServerError

SETTINGS = settings(max_examples=80, deadline=None)

no_nul_text = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=30)
sqlstate = st.text(st.sampled_from("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"), min_size=5, max_size=5)


def split(message: bytes) -> tuple[bytes, bytes]:
    """(type byte, body) of one complete message, checking its length field."""
    (length,) = struct.unpack_from("!i", message, 1)
    assert length == len(message) - 1
    return message[:1], message[5:]


def read_cstring(body: bytes, pos: int) -> tuple[str, int]:
    end = body.index(b"\x00", pos)
    return body[pos:end].decode(), end + 1


# --- builders and their decoders -----------------------------------------------------------


@SETTINGS
@given(
    sqlstate,
    no_nul_text,
    st.sampled_from(["ERROR", "FATAL", "PANIC"]),
    st.none() | no_nul_text,
    st.none() | no_nul_text,
)
def test_error_response_round_trip(
    code: str, text: str, severity: str, detail: str | None, hint: str | None
) -> None:
    error = PgmuxError(code, text, severity=severity, detail=detail, hint=hint)
    kind, body = split(m.error_response(error))
    assert kind == m.ERROR_RESPONSE
    assert body.endswith(b"\x00")
    fields = m.parse_error_fields(body)
    expected = {"S": severity, "V": severity, "C": code, "M": text}
    if detail:
        expected["D"] = detail
    if hint:
        expected["H"] = hint
    assert fields == expected
    remote = ServerError(fields)
    assert (remote.sqlstate, remote.severity, remote.message) == (code, severity, text)
    assert str(remote) == str(error)


@SETTINGS
@given(no_nul_text)
def test_notice_response_round_trip(text: str) -> None:
    kind, body = split(m.notice_response(text))
    assert kind == m.NOTICE_RESPONSE
    fields = m.parse_error_fields(body)
    assert (fields["S"], fields["C"], fields["M"]) == ("NOTICE", "00000", text)


def test_server_error_defaults() -> None:
    error = ServerError({"S": "ERREUR", "M": "boom"})  # localized S, no V: S is used
    assert (error.sqlstate, error.severity, error.message) == ("XX000", "ERREUR", "boom")
    assert ServerError().severity == "ERROR"


@SETTINGS
@given(
    st.lists(
        st.tuples(
            no_nul_text, st.sampled_from([m.TYPE_OID_TEXT, m.TYPE_OID_INT8, m.TYPE_OID_INT4])
        ),
        max_size=8,
    )
)
def test_row_description_layout(columns: list[tuple[str, int]]) -> None:
    kind, body = split(m.row_description(columns))
    assert kind == m.ROW_DESCRIPTION
    (count,) = struct.unpack_from("!h", body, 0)
    assert count == len(columns)
    pos = 2
    for name, type_oid in columns:
        got, pos = read_cstring(body, pos)
        table, attnum, oid, size, typmod, fmt = struct.unpack_from("!ihihih", body, pos)
        pos += 18
        assert (got, table, attnum, oid, typmod, fmt) == (name, 0, 0, type_oid, -1, 0)
        assert size == (8 if type_oid == m.TYPE_OID_INT8 else -1)
    assert pos == len(body)


@SETTINGS
@given(st.lists(st.none() | no_nul_text | st.integers(), max_size=10))
def test_data_row_layout(values: list[object]) -> None:
    kind, body = split(m.data_row(iter(values)))  # any iterable, counted while encoding
    assert kind == m.DATA_ROW
    (count,) = struct.unpack_from("!h", body, 0)
    assert count == len(values)
    pos = 2
    for value in values:
        (size,) = struct.unpack_from("!i", body, pos)
        pos += 4
        if value is None:
            assert size == -1
            continue
        assert body[pos : pos + size] == str(value).encode()
        pos += size
    assert pos == len(body)


@SETTINGS
@given(
    st.text(st.characters(min_codepoint=1, max_codepoint=127), max_size=20), st.binary(max_size=200)
)
def test_sasl_initial_response_round_trip(mechanism: str, payload: bytes) -> None:
    kind, body = split(m.sasl_initial_response(mechanism, payload))
    assert kind == m.PASSWORD_MESSAGE
    assert m.parse_sasl_initial_response(body) == (mechanism, payload)
    assert m.parse_sasl_initial_response(memoryview(body)) == (mechanism, payload)


def test_sasl_initial_response_without_data() -> None:
    body = b"SCRAM-SHA-256\x00" + struct.pack("!i", -1)
    assert m.parse_sasl_initial_response(body) == ("SCRAM-SHA-256", b"")


@pytest.mark.parametrize(
    "body",
    [
        b"SCRAM-SHA-256",  # no terminator
        b"SCRAM-SHA-256\x00\x00\x00",  # length cut short
        b"SCRAM-SHA-256\x00" + struct.pack("!i", 5) + b"abcd",  # payload shorter than said
        b"SCRAM-SHA-256\x00" + struct.pack("!i", 3) + b"abcd",  # payload longer than said
        b"SCRAM-SHA-256\x00" + struct.pack("!i", -2),
        b"SCRAM-SHA-256\x00" + struct.pack("!i", -1) + b"junk",  # no data, yet data follows
    ],
)
def test_sasl_initial_response_malformed(body: bytes) -> None:
    with pytest.raises(ValueError):
        m.parse_sasl_initial_response(body)


@SETTINGS
@given(no_nul_text, no_nul_text)
def test_parameter_status_round_trip(name: str, value: str) -> None:
    kind, body = split(m.parameter_status(name, value))
    assert kind == m.PARAMETER_STATUS
    assert m.parse_parameter_status(body) == (name, value)
    block = m.parameter_status_block({name: value, "x": "y"})
    assert block == m.parameter_status(name, value) + m.parameter_status("x", "y")


@pytest.mark.parametrize("body", [b"", b"a\x00", b"a\x00b\x00c\x00", b"a\x00b"])
def test_parameter_status_malformed(body: bytes) -> None:
    with pytest.raises(ValueError):
        m.parse_parameter_status(body)


@SETTINGS
@given(st.integers(-(2**31), 2**31 - 1), st.binary(max_size=50))
def test_authentication_round_trip(code: int, payload: bytes) -> None:
    kind, body = split(m.authentication(code, payload))
    assert kind == m.AUTHENTICATION
    assert m.parse_authentication(body) == (code, payload)


def test_authentication_ok_constant() -> None:
    assert m.AUTHENTICATION_OK == b"R\x00\x00\x00\x08\x00\x00\x00\x00"


@SETTINGS
@given(st.lists(no_nul_text.filter(bool), max_size=4))
def test_authentication_sasl_mechanisms_round_trip(mechanisms: list[str]) -> None:
    code, payload = m.parse_authentication(split(m.authentication_sasl(mechanisms))[1])
    assert code == m.AUTH_SASL
    assert m.parse_sasl_mechanisms(payload) == mechanisms


@SETTINGS
@given(st.integers(-(2**31), 2**31 - 1), st.integers(0, 2**32 - 1))
def test_backend_key_data_round_trip(pid: int, secret: int) -> None:
    kind, body = split(m.backend_key_data(pid, secret))
    assert kind == m.BACKEND_KEY_DATA
    assert m.parse_backend_key_data(body) == (pid, secret)
    assert m.parse_backend_key_data(memoryview(body)) == (pid, secret)


@SETTINGS
@given(no_nul_text)
def test_query_round_trip(sql: str) -> None:
    kind, body = split(m.query(sql))
    assert kind == m.QUERY
    assert m.parse_query(body) == sql


@SETTINGS
@given(st.binary().filter(lambda b: b"\x00" not in b))
def test_password_round_trip(password: bytes) -> None:
    kind, body = split(m.password_message(password + b"\x00"))
    assert kind == m.PASSWORD_MESSAGE
    assert m.parse_password(body) == password


def test_fixed_messages() -> None:
    assert m.ready_for_query() == b"Z\x00\x00\x00\x05I"
    assert m.ready_for_query(m.TX_FAILED) == b"Z\x00\x00\x00\x05E"
    assert m.command_complete("SET") == b"C\x00\x00\x00\x08SET\x00"
    assert m.empty_query_response() == b"I\x00\x00\x00\x04"
    assert m.TERMINATE_MESSAGE == b"X\x00\x00\x00\x04"
    assert m.SYNC_MESSAGE == b"S\x00\x00\x00\x04"
    assert m.message(b"d", b"xyz") == b"d\x00\x00\x00\x07xyz"
    assert m.cstring("é") == "é".encode() + b"\x00"


@SETTINGS
@given(st.lists(no_nul_text, max_size=6))
def test_split_cstrings_round_trip(parts: list[str]) -> None:
    assert m.split_cstrings(b"".join(m.cstring(p) for p in parts)) == parts


def test_decoders_tolerate_invalid_utf8() -> None:
    assert m.parse_query(b"\xff\x00") == "\ufffd"
    assert m.parse_error_fields(b"M\xff\x00\x00") == {"M": "\ufffd"}
    assert m.split_cstrings(b"\xfe\x00") == ["\ufffd"]


# --- fuzz: arbitrary bytes raise ValueError or decode -----------------------------------------

DECODERS: dict[str, Callable[[bytes | memoryview], object]] = {
    "split_cstrings": m.split_cstrings,
    "parse_parameter_status": m.parse_parameter_status,
    "parse_error_fields": m.parse_error_fields,
    "parse_authentication": m.parse_authentication,
    "parse_sasl_mechanisms": lambda body: m.parse_sasl_mechanisms(bytes(body)),
    "parse_sasl_initial_response": m.parse_sasl_initial_response,
    "parse_password": m.parse_password,
    "parse_backend_key_data": m.parse_backend_key_data,
    "parse_query": m.parse_query,
}


@pytest.mark.parametrize("name", sorted(DECODERS))
@settings(max_examples=150, deadline=None)
@given(raw=st.binary(max_size=64), as_view=st.booleans())
def test_decoders_raise_only_value_error(name: str, raw: bytes, as_view: bool) -> None:
    body: bytes | memoryview = memoryview(raw) if as_view else raw
    with contextlib.suppress(ValueError):
        DECODERS[name](body)
