"""SCRAM-SHA-256: the RFC 7677 test vector, ScramServer and ScramClient talking to each other,
pass-through with a recovered ClientKey, and rejection of everything malformed."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from pgmux.auth import AuthError, ScramClient, ScramSecret, ScramServer, md5_secret
from pgmux.auth.scram import auth_message, client_proof, server_signature
from pgmux.auth.secrets import client_key_from_salted, salted_password, server_key_from_salted

# RFC 7677 section 3.
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_CLIENT_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_NONCE = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
RFC_NONCE = (RFC_CLIENT_NONCE + RFC_SERVER_NONCE).encode()
RFC_CLIENT_FIRST = b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = b"r=" + RFC_NONCE + b",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"
RFC_CLIENT_FINAL_BARE = b"c=biws,r=" + RFC_NONCE
RFC_PROOF = "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
RFC_CLIENT_FINAL = RFC_CLIENT_FINAL_BARE + b",p=" + RFC_PROOF.encode()
RFC_SERVER_FINAL = b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="

SECRET = ScramSecret.from_password("pencil", salt=RFC_SALT, iterations=4096)


def exchange(server: ScramServer, client: ScramClient) -> None:
    """Run a whole login; AuthError from whichever side refuses."""
    server_first = server.handle_client_first(client.client_first())
    server_final = server.handle_client_final(client.handle_server_first(server_first))
    client.handle_server_final(server_final)


def rfc_server() -> ScramServer:
    """A server that has answered the RFC's client-first-message."""
    server = ScramServer(SECRET, nonce=RFC_SERVER_NONCE)
    server.handle_client_first(RFC_CLIENT_FIRST)
    return server


# --- the RFC 7677 vector -------------------------------------------------------------------------


def test_rfc7677_arithmetic() -> None:
    salted = salted_password("pencil", RFC_SALT, 4096)
    client_key = client_key_from_salted(salted)
    client_first_bare = RFC_CLIENT_FIRST.removeprefix(b"n,,")
    message = auth_message(client_first_bare, RFC_SERVER_FIRST, RFC_CLIENT_FINAL_BARE)
    assert base64.b64encode(client_proof(client_key, message)).decode() == RFC_PROOF
    signature = server_signature(server_key_from_salted(salted), message)
    assert b"v=" + base64.b64encode(signature) == RFC_SERVER_FINAL


def test_rfc7677_server_side() -> None:
    # The server ignores the user name, so it can consume the RFC's messages as they stand.
    server = ScramServer(SECRET, nonce=RFC_SERVER_NONCE)
    assert server.handle_client_first(RFC_CLIENT_FIRST) == RFC_SERVER_FIRST
    assert server.handle_client_final(RFC_CLIENT_FINAL) == RFC_SERVER_FINAL
    expected_key = client_key_from_salted(salted_password("pencil", RFC_SALT, 4096))
    assert server.client_key == expected_key
    assert server.secret is SECRET


def test_rfc7677_client_side_with_postgres_empty_user_name() -> None:
    """The client sends ``n=``, so the AuthMessage differs from the RFC's; recompute the proof
    and signature with hashlib alone."""
    client = ScramClient(password="pencil", nonce=RFC_CLIENT_NONCE)
    assert client.client_first() == b"n,,n=,r=" + RFC_CLIENT_NONCE.encode()
    final = client.handle_server_first(RFC_SERVER_FIRST)

    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", RFC_SALT, 4096)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    message = b"n=,r=" + RFC_CLIENT_NONCE.encode() + b"," + RFC_SERVER_FIRST + b","
    message += RFC_CLIENT_FINAL_BARE
    signature = hmac.new(hashlib.sha256(client_key).digest(), message, hashlib.sha256).digest()
    proof = bytes(a ^ b for a, b in zip(client_key, signature, strict=True))
    assert final == RFC_CLIENT_FINAL_BARE + b",p=" + base64.b64encode(proof)

    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    verifier = hmac.new(server_key, message, hashlib.sha256).digest()
    client.handle_server_final(b"v=" + base64.b64encode(verifier))


# --- server and client together ------------------------------------------------------------------


def test_round_trip_with_password() -> None:
    server = ScramServer(SECRET)
    exchange(server, ScramClient(password="pencil"))
    assert len(server.client_key) == 32


def test_wrong_password_is_refused() -> None:
    server = ScramServer(SECRET)
    with pytest.raises(AuthError, match="wrong password") as info:
        exchange(server, ScramClient(password="pencil!"))
    assert "pencil" not in str(info.value)
    with pytest.raises(RuntimeError):
        _ = server.client_key


def test_server_accepts_plain_password_and_secret_text() -> None:
    exchange(ScramServer("hunter2"), ScramClient(password="hunter2"))
    exchange(ScramServer(SECRET.to_text()), ScramClient(password="pencil"))
    with pytest.raises(AuthError):
        exchange(ScramServer("hunter2"), ScramClient(password="hunter3"))


def test_server_refuses_md5_secret() -> None:
    with pytest.raises(ValueError, match="md5"):
        ScramServer(md5_secret("alice", "pencil"))


def test_server_refuses_malformed_scram_secret_text() -> None:
    with pytest.raises(ValueError, match="malformed SCRAM secret"):
        ScramServer("SCRAM-SHA-256$4096:not-a-secret")


def test_pass_through_with_recovered_client_key() -> None:
    front = ScramServer(SECRET)
    exchange(front, ScramClient(password="pencil"))
    # pgmux never saw the password, yet logs in to a server holding the same secret.
    back = ScramServer(SECRET)
    client = ScramClient(client_key=front.client_key, server_key=SECRET.server_key)
    exchange(back, client)
    assert back.client_key == front.client_key


def test_pass_through_fails_against_a_different_secret() -> None:
    front = ScramServer(SECRET)
    exchange(front, ScramClient(password="pencil"))
    other = ScramSecret.from_password("pencil")  # same password, different salt
    client = ScramClient(client_key=front.client_key, server_key=SECRET.server_key)
    with pytest.raises(AuthError):
        exchange(ScramServer(other), client)


def test_client_detects_server_without_the_secret() -> None:
    impostor = ScramSecret.from_password("not pencil", salt=RFC_SALT)
    server = ScramServer(impostor)
    client = ScramClient(password="pencil")
    server_first = server.handle_client_first(client.client_first())
    client_final = client.handle_server_first(server_first)
    with pytest.raises(AuthError):
        server.handle_client_final(client_final)
    # Even an impostor that claims success cannot produce the right signature.
    forged = b"v=" + base64.b64encode(bytes(32))
    with pytest.raises(AuthError, match="server signature"):
        client.handle_server_final(forged)


def test_random_nonces_differ() -> None:
    assert ScramClient(password="x").client_first() != ScramClient(password="x").client_first()
    first = ScramServer(SECRET).handle_client_first(b"n,,n=,r=abc")
    assert first != ScramServer(SECRET).handle_client_first(b"n,,n=,r=abc")
