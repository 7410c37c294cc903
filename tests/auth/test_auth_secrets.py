"""ScramSecret, secret_kind and SASLprep, checked against independent computation and against
secrets that a real PostgreSQL 15 stored in pg_authid."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pgmux.auth import ScramSecret, saslprep, secret_kind

# (password, pg_authid.rolpassword) pairs produced by PostgreSQL 15's CREATE ROLE ... PASSWORD.
# The non-ASCII ones pin down SASLprep as PostgreSQL does it.
POSTGRES_SECRETS = {
    "ascii": (
        "pencil",
        "SCRAM-SHA-256$4096:hgP0sAIY2clQwRz4AWCBMA==$ufXq1UAbzXHUWFtnHpFUMlUrltRzQAQy6N2oILFMt1c="
        ":lio9jpvYCGHm+HyBeF15zcN55euBzusrgs/B53HLQn8=",
    ),
    "NFKC: roman numeral nine is IX": (
        "\u2168",
        "SCRAM-SHA-256$4096:px+XFckX2ED0EYzWa8i9xA==$iTnOrbDfT1NmWdBKpJ5JRUbHzDImUnOL2Jm+rZ/X9gQ="
        ":WLxtbGd+JtVJAbbSNQGEcLtpoIaPDQOBlYjwx80zBlY=",
    ),
    "soft hyphen maps to nothing": (
        "I\u00adX",
        "SCRAM-SHA-256$4096:QWzSrzdOQm9B+rpurcOjlQ==$IGyMUwUrduapwm9OPvPHc3xN3RHrx1nu9mUP2ws3wuA="
        ":0ewFoO99itlVP16p/E+ABwrmhnUnlwC9oOTXrLrcC4A=",
    ),
    "no-break space maps to space": (
        "a\u00a0b",
        "SCRAM-SHA-256$4096:It4ebKo623pnDQaBu2HWxA==$Sr9RFJnFHCVCVQd6gBq+QBGPP1KxroN85UTvtqZ0Ru0="
        ":wWSW6NN72SNTLFfyLvaTMl9FyYQB+sRPT+bYLYfpIuw=",
    ),
    "bad bidi: raw bytes used": (
        "\u0627\u0031",
        "SCRAM-SHA-256$4096:O8fYJRzKEnoDmEft/uCpiA==$A23+9OaLmHSZgUkKusj2R5YJLSnqE7aoVSg79BNdsvE="
        ":Nqb92reP8S1PkciTCUKbT5aNOa/NvYCDaSVf0cPA0+o=",
    ),
    "empty after mapping: raw bytes used": (
        "\u00ad\u00ad",
        "SCRAM-SHA-256$4096:OaTn2QflKHbV7LR0mGjh2g==$tAOgh/Fh4tS5PMC+6zXLdVxGhUdRU09+UekdBv5gDYQ="
        ":cwkvpoMQ/YTwPq2Rdhme9yInVdBjgv5N7Fr6mL5JmG4=",
    ),
    "ASCII control character passes unchanged": (
        "a\x07b",
        "SCRAM-SHA-256$4096:yqkykkyanYLUjc7ZIugBvg==$3qBtlgqf/XYB6SnK8maRmrGP2wzQKv3qZYGQ4A9XCvw="
        ":bXK5Tr4W9XbPrG0rnrBFwUPyP4pxplmungfP50neRtI=",
    ),
}


def _independent_secret_text(password_bytes: bytes, salt: bytes, iterations: int) -> str:
    """RFC 5802 key derivation spelled out with hashlib, sharing no code with pgmux."""
    salted = hashlib.pbkdf2_hmac("sha256", password_bytes, salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    fields = [base64.b64encode(value).decode() for value in (salt, stored_key, server_key)]
    return f"SCRAM-SHA-256${iterations}:{fields[0]}${fields[1]}:{fields[2]}"


@pytest.mark.parametrize(("password", "stored"), POSTGRES_SECRETS.values(), ids=POSTGRES_SECRETS)
def test_from_password_matches_postgres(password: str, stored: str) -> None:
    parsed = ScramSecret.parse(stored)
    derived = ScramSecret.from_password(password, salt=parsed.salt, iterations=parsed.iterations)
    assert derived == parsed
    assert derived.to_text() == stored


def test_from_password_matches_independent_derivation() -> None:
    salt = bytes(range(16))
    secret = ScramSecret.from_password("correct horse", salt=salt, iterations=4096)
    assert secret.to_text() == _independent_secret_text(b"correct horse", salt, 4096)


def test_from_password_random_salt() -> None:
    first = ScramSecret.from_password("pw", iterations=1)
    second = ScramSecret.from_password("pw", iterations=1)
    assert len(first.salt) == 16
    assert first.salt != second.salt
    assert first.iterations == 1


@pytest.mark.parametrize("iterations", [0, -1, 2**31])
def test_from_password_rejects_bad_iterations(iterations: int) -> None:
    with pytest.raises(ValueError, match="iteration count"):
        ScramSecret.from_password("pw", salt=b"salt", iterations=iterations)


@settings(max_examples=50, deadline=None)
@given(
    salt=st.binary(min_size=1, max_size=64),
    stored_key=st.binary(min_size=32, max_size=32),
    server_key=st.binary(min_size=32, max_size=32),
    iterations=st.integers(1, 2**31 - 1),
)
def test_text_round_trip(
    salt: bytes, stored_key: bytes, server_key: bytes, iterations: int
) -> None:
    secret = ScramSecret(iterations, salt, stored_key, server_key)
    assert ScramSecret.parse(secret.to_text()) == secret


VALID = POSTGRES_SECRETS["ascii"][1]
_KEY = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "pencil",
        "md53175bce1d3201d16594cebf9d7eb3f9d",
        VALID.replace("SCRAM-SHA-256", "SCRAM-SHA-1"),
        VALID.replace("4096", "abc"),
        VALID.replace("4096", "0"),
        VALID.replace("4096", "99999999999"),
        VALID.replace(":", ";", 1),
        VALID + "$extra",
        VALID.replace("==", "=", 1),  # bad base64 padding in the salt
        f"SCRAM-SHA-256$4096:c2FsdA==${_KEY[:-4]}:{_KEY}",  # StoredKey too short
        f"SCRAM-SHA-256$4096:c2FsdA==${_KEY}:{_KEY}AAAA",  # ServerKey too long
        f"SCRAM-SHA-256$\u0664\u0660\u0669\u0666:c2FsdA==${_KEY}:{_KEY}",  # Arabic-Indic digits
    ],
)
def test_parse_rejects_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="malformed SCRAM secret") as info:
        ScramSecret.parse(text)
    if text:
        assert text not in str(info.value)


def test_repr_hides_keys() -> None:
    secret = ScramSecret.parse(VALID)
    text = repr(secret)
    for key in (secret.stored_key, secret.server_key):
        assert repr(key) not in text
        assert base64.b64encode(key).decode() not in text
    assert "4096" in text


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        ("md53175bce1d3201d16594cebf9d7eb3f9d", "md5"),
        ("md53175BCE1D3201D16594CEBF9D7EB3F9D", "plain"),  # PostgreSQL's isMD5 wants lowercase
        ("md53175bce1d3201d16594cebf9d7eb3f9", "plain"),  # 31 hex digits
        ("md53175bce1d3201d16594cebf9d7eb3f9d0", "plain"),  # 33 hex digits
        ("md5", "plain"),
        (VALID, "scram"),
        ("SCRAM-SHA-256$garbage", "scram"),
        ("scram-sha-256$4096", "plain"),
        ("pencil", "plain"),
        ("", "plain"),
    ],
)
def test_secret_kind(value: str, kind: str) -> None:
    assert secret_kind(value) == kind


@pytest.mark.parametrize(
    ("password", "prepared"),
    [
        # RFC 4013 section 3 examples, with PostgreSQL's "use the raw bytes" instead of errors.
        ("I\u00adX", b"IX"),
        ("user", b"user"),
        ("USER", b"USER"),
        ("\u00aa", b"a"),
        ("\u2168", b"IX"),
        ("\x07", b"\x07"),
        ("\u0627\u0031", "\u0627\u0031".encode()),
        # Mapping, normalization and allowed right-to-left text.
        ("a\u3000b", b"a b"),
        ("\ufb01", b"fi"),
        ("\u0627\u0628", "\u0627\u0628".encode()),
        ("caf\u0065\u0301", "caf\u00e9".encode()),
        # Prohibited output (private use, non-character) falls back to the raw password.
        ("a\ue000", "a\ue000".encode()),
        ("a\ufffe", "a\ufffe".encode()),
        ("", b""),
    ],
)
def test_saslprep(password: str, prepared: bytes) -> None:
    assert saslprep(password) == prepared


@given(st.text(st.characters(codec="ascii")))
def test_saslprep_leaves_ascii_alone(password: str) -> None:
    assert saslprep(password) == password.encode("ascii")


@given(st.text())
def test_saslprep_never_raises(password: str) -> None:
    assert isinstance(saslprep(password), bytes)
