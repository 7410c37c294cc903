"""md5 secrets and challenge responses, checked against known values and hashlib."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgmux.auth import md5_response, md5_secret, secret_kind, verify_md5_response

SALT = b"\x01\x02\x03\x04"


def _md5hex(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def test_md5_secret_known_values() -> None:
    assert md5_secret("postgres", "postgres") == "md53175bce1d3201d16594cebf9d7eb3f9d"
    # Stored by PostgreSQL 15 for CREATE ROLE md5user PASSWORD 'md5pw' (password_encryption=md5).
    assert md5_secret("md5user", "md5pw") == "md5704ac3bc41dadc414b9aa9dbf5e63cdd"


def test_md5_response_matches_independent_computation() -> None:
    expected = b"md5" + _md5hex(_md5hex(b"s3cretalice").encode() + SALT).encode()
    assert md5_response("alice", "s3cret", SALT) == expected
    assert len(expected) == 35  # "md5" + 32 hex digits, no trailing NUL


def test_md5_response_from_secret_equals_from_password() -> None:
    secret = md5_secret("alice", "s3cret")
    assert md5_response("alice", secret, SALT) == md5_response("alice", "s3cret", SALT)


def test_verify_md5_response() -> None:
    response = md5_response("alice", "s3cret", SALT)
    assert verify_md5_response("alice", "s3cret", SALT, response)
    assert verify_md5_response("alice", md5_secret("alice", "s3cret"), SALT, response)
    assert not verify_md5_response("alice", "wrong", SALT, response)
    assert not verify_md5_response("bob", "s3cret", SALT, response)  # the user name is salted in
    assert not verify_md5_response("alice", "s3cret", b"\x00\x00\x00\x00", response)
    assert not verify_md5_response("alice", "s3cret", SALT, response + b"\x00")
    assert not verify_md5_response("alice", "s3cret", SALT, b"")


def test_non_ascii_password_is_hashed_as_utf8_without_saslprep() -> None:
    assert md5_secret("u", "\u2168") == "md5" + _md5hex("\u2168u".encode())


def test_scram_secret_is_refused() -> None:
    scram = (
        "SCRAM-SHA-256$4096:hgP0sAIY2clQwRz4AWCBMA==$ufXq1UAbzXHUWFtnHpFUMlUrltRzQAQy6N2oILFMt1c="
        ":lio9jpvYCGHm+HyBeF15zcN55euBzusrgs/B53HLQn8="
    )
    with pytest.raises(ValueError, match="SCRAM secret"):
        md5_response("alice", scram, SALT)
    with pytest.raises(ValueError, match="SCRAM secret"):
        verify_md5_response("alice", scram, SALT, b"md5")


@given(
    user=st.text(),
    password=st.text().filter(lambda p: secret_kind(p) == "plain"),
    salt=st.binary(min_size=4, max_size=4),
    other_salt=st.binary(min_size=4, max_size=4),
)
def test_response_round_trip(user: str, password: str, salt: bytes, other_salt: bytes) -> None:
    response = md5_response(user, password, salt)
    assert verify_md5_response(user, password, salt, response)
    assert verify_md5_response(user, md5_secret(user, password), salt, response)
    assert verify_md5_response(user, password, other_salt, response) == (salt == other_salt)
