"""SCRAM refusals: malformed or hostile messages, out-of-order calls and bad arguments, plus
hypothesis round trips and fuzzing. Anything a peer sends must end in AuthError, never in another
exception type."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Callable

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pgmux.auth import AuthError, ScramClient, ScramServer, saslprep
from pgmux.auth.scram import auth_message, client_proof
from pgmux.auth.secrets import client_key_from_salted, salted_password

from .test_auth_scram import (
    RFC_CLIENT_FINAL,
    RFC_CLIENT_FINAL_BARE,
    RFC_CLIENT_FIRST,
    RFC_CLIENT_NONCE,
    RFC_NONCE,
    RFC_SALT,
    RFC_SERVER_FINAL,
    RFC_SERVER_FIRST,
    SECRET,
    exchange,
    rfc_server,
)


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


RFC_CLIENT_KEY = client_key_from_salted(salted_password("pencil", RFC_SALT, 4096))


def keyed_client(nonce: str = RFC_CLIENT_NONCE) -> ScramClient:
    """A client that needs no PBKDF2, so fuzzing stays fast whatever iteration count it meets."""
    return ScramClient(client_key=RFC_CLIENT_KEY, server_key=SECRET.server_key, nonce=nonce)


def only_auth_errors(step: Callable[[bytes], object], data: bytes) -> None:
    """Feed ``data`` to ``step``: AuthError is a fine refusal, any other exception a bug."""
    with contextlib.suppress(AuthError):
        step(data)


# --- the server refusing a client ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b"p=tls-server-end-point,,n=,r=abc", "channel binding"),
        (b"p,,n=,r=abc", "channel binding"),
        (b"n,a=admin,n=,r=abc", "authorization identity"),
        (b"n,,m=ext,n=,r=abc", "extension"),
        (b"x,,n=,r=abc", "malformed"),
        (b"nn,n=,r=abc", "malformed"),
        (b"n,x,n=,r=abc", "malformed"),
        (b"n,,r=abc", "expected attribute n="),
        (b"n,,n=", "expected attribute r="),
        (b"n,,n=,r=", "nonce"),
        (b"n,,n=,r=a\x7fb", "nonce"),
        (b"n,,n=,r=\xc3\xa9", "nonce"),
        (b"n,,n=,r=abc,=x", "malformed"),
        (b"n,,n=,r=abc,", "malformed"),
        (b"", "malformed"),
        (b"n", "malformed"),
        (b"n,,", "malformed"),
    ],
)
def test_server_refuses_client_first(message: bytes, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        ScramServer(SECRET).handle_client_first(message)


def test_server_accepts_client_that_could_bind_but_thinks_we_cannot() -> None:
    server = ScramServer(SECRET, nonce="srv")
    server.handle_client_first(b"y,,n=,r=cli,x=an extension")
    final = b"c=" + base64.b64encode(b"y,,") + b",r=clisrv"
    server_first = b"r=clisrv,s=" + _b64(RFC_SALT) + b",i=4096"
    message = auth_message(b"n=,r=cli,x=an extension", server_first, final)
    server.handle_client_final(final + b",p=" + _b64(client_proof(RFC_CLIENT_KEY, message)))


def test_server_accepts_extensions_before_the_proof() -> None:
    server = rfc_server()
    final = RFC_CLIENT_FINAL_BARE + b",x=extension"
    message = auth_message(RFC_CLIENT_FIRST[3:], RFC_SERVER_FIRST, final)
    proof = client_proof(RFC_CLIENT_KEY, message)
    assert server.handle_client_final(final + b",p=" + _b64(proof)).startswith(b"v=")


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (RFC_CLIENT_FINAL.replace(b"k0,", b"k1,"), "nonce mismatch"),
        (RFC_CLIENT_FINAL.replace(b"r=" + RFC_NONCE, b"r=" + RFC_NONCE + b"x"), "nonce mismatch"),
        (RFC_CLIENT_FINAL.replace(b"c=biws", b"c=eSws"), "channel binding"),
        (RFC_CLIENT_FINAL.replace(b"c=biws", b"c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws"), "binding"),
        (RFC_CLIENT_FINAL.replace(b"c=biws", b"c=b!ws"), "base64"),
        (RFC_CLIENT_FINAL.replace(b"p=dHzb", b"p=dHzc"), "wrong password"),
        (RFC_CLIENT_FINAL + b",x=after", "last"),
        (RFC_CLIENT_FINAL_BARE, "last"),
        (RFC_CLIENT_FINAL_BARE + b",p=AAAA", "length"),
        (RFC_CLIENT_FINAL_BARE + b",p=AAA", "base64"),
        (RFC_CLIENT_FINAL_BARE + b",p=" + _b64(bytes(33)), "length"),
        (b"r=" + RFC_NONCE + b",c=biws,p=" + _b64(bytes(32)), "expected attribute c="),
        (b"c=biws", "expected attribute r="),
        (b"", "malformed"),
    ],
)
def test_server_refuses_client_final(message: bytes, match: str) -> None:
    with pytest.raises(AuthError, match=match):
        rfc_server().handle_client_final(message)


def test_server_steps_in_order_only() -> None:
    with pytest.raises(AuthError, match="unexpected"):
        ScramServer(SECRET).handle_client_final(RFC_CLIENT_FINAL)
    server = rfc_server()
    with pytest.raises(AuthError, match="unexpected"):
        server.handle_client_first(RFC_CLIENT_FIRST)
    with pytest.raises(AuthError, match="unexpected"):
        server.handle_client_final(RFC_CLIENT_FINAL)  # the exchange already failed


def test_server_failure_is_final() -> None:
    server = rfc_server()
    with pytest.raises(AuthError):
        server.handle_client_final(RFC_CLIENT_FINAL.replace(b"p=dHzb", b"p=dHzc"))
    with pytest.raises(AuthError, match="unexpected"):
        server.handle_client_final(RFC_CLIENT_FINAL)
    with pytest.raises(RuntimeError):
        _ = server.client_key


def test_server_done_refuses_more() -> None:
    server = rfc_server()
    assert server.handle_client_final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    with pytest.raises(AuthError, match="unexpected"):
        server.handle_client_final(RFC_CLIENT_FINAL)


@pytest.mark.parametrize("nonce", ["", "a,b", "caf\u00e9", "a b", "tab\t"])
def test_bad_configured_nonces(nonce: str) -> None:
    with pytest.raises(ValueError, match="nonce"):
        ScramServer(SECRET, nonce=nonce)
    with pytest.raises(ValueError, match="nonce"):
        ScramClient(password="x", nonce=nonce)


# --- the client refusing a server ----------------------------------------------------------------


def _server_first(nonce: bytes = RFC_NONCE, salt: bytes = b"c2FsdA==", i: bytes = b"4096") -> bytes:
    return b"r=" + nonce + b",s=" + salt + b",i=" + i


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (_server_first(nonce=RFC_CLIENT_NONCE.encode()), "nonce mismatch"),
        (_server_first(nonce=b"X" + RFC_NONCE[1:]), "nonce mismatch"),
        (_server_first(nonce=RFC_NONCE + b"\x01"), "nonce"),
        (_server_first(i=b"0"), "iteration count 0"),
        (_server_first(i=b"10000001"), "iteration count 10000001"),
        (_server_first(i=b"99999999999"), "iteration count"),
        (_server_first(i=b"-1"), "iteration count"),
        (_server_first(i=b"1e3"), "iteration count"),
        (_server_first(i=b""), "iteration count"),
        (_server_first(i=b"\xd9\xa4"), "iteration count"),
        (_server_first(salt=b"c2FsdA="), "base64"),
        (b"m=x," + _server_first(), "extension"),
        (b"r=" + RFC_NONCE + b",s=c2FsdA==", "expected attribute i="),
        (b"s=c2FsdA==,r=" + RFC_NONCE + b",i=1", "expected attribute r="),
        (b"", "malformed"),
    ],
)
def test_client_refuses_server_first(message: bytes, match: str) -> None:
    client = keyed_client()
    client.client_first()
    with pytest.raises(AuthError, match=match):
        client.handle_server_first(message)


@pytest.mark.parametrize("iterations", [b"1", b"10000000", b"0004096"])
def test_client_accepts_iteration_bounds(iterations: bytes) -> None:
    client = keyed_client()
    client.client_first()
    assert client.handle_server_first(_server_first(i=iterations) + b",x=ext").startswith(b"c=")


@pytest.mark.parametrize(
    ("message", "match"),
    [
        (b"e=invalid-proof", "server rejected SCRAM authentication: invalid-proof"),
        (b"e=other-error,x=1", "other-error"),
        (b"e=bad\x1b[31mtext\xff", r"bad\?\[31mtext\?"),
        (b"v=AAAA", "server signature"),
        (b"v=" + _b64(bytes(32)), "server signature"),
        (b"v=!!!!", "base64"),
        (b"x=1", "expected attribute v="),
        (b"", "malformed"),
    ],
)
def test_client_refuses_server_final(message: bytes, match: str) -> None:
    client = keyed_client()
    client.client_first()
    client.handle_server_first(RFC_SERVER_FIRST)
    with pytest.raises(AuthError, match=match):
        client.handle_server_final(message)


def test_client_steps_in_order_only() -> None:
    client = keyed_client()
    with pytest.raises(AuthError, match="unexpected"):
        client.handle_server_first(RFC_SERVER_FIRST)
    client = keyed_client()
    client.client_first()
    with pytest.raises(AuthError, match="unexpected"):
        client.client_first()
    with pytest.raises(AuthError, match="unexpected"):
        client.handle_server_first(RFC_SERVER_FIRST)  # the exchange already failed


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"client_key": bytes(32)},
        {"server_key": bytes(32)},
        {"password": "x", "client_key": bytes(32), "server_key": bytes(32)},
        {"password": "x", "server_key": bytes(32)},
        {"client_key": bytes(31), "server_key": bytes(32)},
        {"client_key": bytes(32), "server_key": b""},
    ],
)
def test_client_arguments(kwargs: dict[str, bytes | str]) -> None:
    with pytest.raises(ValueError):
        ScramClient(**kwargs)  # type: ignore[arg-type]


# --- hypothesis ----------------------------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, message: bytes) -> bytes:
    """``message`` with one slice replaced by random bytes: reaches deeper than pure noise."""
    start = draw(st.integers(0, len(message)))
    end = draw(st.integers(start, len(message)))
    return message[:start] + draw(st.binary(max_size=8)) + message[end:]


# A password cannot hold NUL (the protocol's strings end at one). Nor could SCRAM tell it apart:
# HMAC pads a short key with zero bytes, so "" and "\x00" derive the same SaltedPassword.
PASSWORD_TEXT = st.text(st.characters(blacklist_characters="\x00"), max_size=40)


@settings(max_examples=40, deadline=None)
@given(password=PASSWORD_TEXT, wrong=PASSWORD_TEXT)
def test_round_trip_any_password(password: str, wrong: str) -> None:
    exchange(ScramServer(password), ScramClient(password=password))
    assume(saslprep(wrong) != saslprep(password))
    with pytest.raises(AuthError):
        exchange(ScramServer(password), ScramClient(password=wrong))


@given(st.one_of(st.binary(), mutated(RFC_CLIENT_FIRST)))
def test_fuzz_client_first(data: bytes) -> None:
    only_auth_errors(ScramServer(SECRET).handle_client_first, data)


@given(st.one_of(st.binary(), mutated(RFC_CLIENT_FINAL)))
def test_fuzz_client_final(data: bytes) -> None:
    only_auth_errors(rfc_server().handle_client_final, data)


@given(st.one_of(st.binary(), mutated(RFC_SERVER_FIRST)))
def test_fuzz_server_first(data: bytes) -> None:
    client = keyed_client()
    client.client_first()
    only_auth_errors(client.handle_server_first, data)


@given(st.one_of(st.binary(), mutated(b"v=" + _b64(bytes(32))), mutated(b"e=invalid-proof")))
def test_fuzz_server_final(data: bytes) -> None:
    client = keyed_client()
    client.client_first()
    client.handle_server_first(RFC_SERVER_FIRST)
    only_auth_errors(client.handle_server_final, data)
