"""Stored credentials: PostgreSQL's SCRAM-SHA-256 secret format, the SCRAM key derivation, and
telling plain passwords from md5 and SCRAM secrets.

Contract: ``ScramSecret.from_password(p, salt=s, iterations=i).to_text()`` is byte-for-byte what
PostgreSQL stores in ``pg_authid.rolpassword`` for password ``p`` with that salt and iteration
count, and ``ScramSecret.parse`` reads that text back. ``AuthError`` is the one exception type for
failed or malformed authentication; its message never contains a password or key material.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from typing import Literal

from pgmux.auth.saslprep import saslprep

__all__ = [
    "DEFAULT_ITERATIONS",
    "DEFAULT_SALT_LEN",
    "SCRAM_KEY_LEN",
    "AuthError",
    "ScramSecret",
    "SecretKind",
    "client_key_from_salted",
    "hmac_sha256",
    "salted_password",
    "secret_kind",
    "server_key_from_salted",
    "sha256",
]

SCRAM_KEY_LEN = 32  # SHA-256 output: StoredKey, ServerKey, ClientKey, proofs and signatures.
DEFAULT_ITERATIONS = 4096  # PostgreSQL's default scram_iterations.
DEFAULT_SALT_LEN = 16  # PostgreSQL's SCRAM_DEFAULT_SALT_LEN.
_MAX_SECRET_ITERATIONS = 2**31 - 1  # PostgreSQL keeps the count in a C int.

SecretKind = Literal["scram", "md5", "plain"]

_SCRAM_PREFIX = "SCRAM-SHA-256$"
_B64 = r"[A-Za-z0-9+/]+={0,2}"
_SCRAM_SECRET_RE = re.compile(
    rf"SCRAM-SHA-256\$(?P<iterations>[0-9]{{1,10}}):(?P<salt>{_B64})"
    rf"\$(?P<stored_key>{_B64}):(?P<server_key>{_B64})"
)
# PostgreSQL's isMD5(): "md5" and exactly 32 lowercase hex digits.
_MD5_SECRET_RE = re.compile(r"md5[0-9a-f]{32}")


class AuthError(Exception):
    """Authentication failed or an authentication message was malformed.

    The message is safe to log and to show to the peer: it never includes a password or secret.
    """


def secret_kind(secret: str) -> SecretKind:
    """Classify an auth_file or config entry: md5 secret, SCRAM secret or plain password."""
    if _MD5_SECRET_RE.fullmatch(secret):
        return "md5"
    if secret.startswith(_SCRAM_PREFIX):
        return "scram"
    return "plain"


def sha256(data: bytes) -> bytes:
    """SCRAM's H()."""
    return hashlib.sha256(data).digest()


def hmac_sha256(key: bytes, message: bytes) -> bytes:
    """SCRAM's HMAC()."""
    return hmac.digest(key, message, "sha256")


def salted_password(password: str, salt: bytes, iterations: int) -> bytes:
    """SCRAM's SaltedPassword: Hi(SASLprep(password), salt, i), where Hi is PBKDF2-HMAC-SHA-256."""
    return hashlib.pbkdf2_hmac("sha256", saslprep(password), salt, iterations)


def client_key_from_salted(salted: bytes) -> bytes:
    """SCRAM's ClientKey = HMAC(SaltedPassword, "Client Key")."""
    return hmac_sha256(salted, b"Client Key")


def server_key_from_salted(salted: bytes) -> bytes:
    """SCRAM's ServerKey = HMAC(SaltedPassword, "Server Key")."""
    return hmac_sha256(salted, b"Server Key")


@dataclass(frozen=True)
class ScramSecret:
    """What a server stores to verify a SCRAM-SHA-256 login without knowing the password.

    The keys are left out of ``repr`` so that logging a secret (or an object holding one) does not
    leak material that would let someone impersonate the server.
    """

    iterations: int
    salt: bytes
    stored_key: bytes = field(repr=False)
    server_key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.iterations <= _MAX_SECRET_ITERATIONS:
            raise ValueError(f"SCRAM iteration count must be 1..{_MAX_SECRET_ITERATIONS}")
        if not self.salt:
            raise ValueError("SCRAM salt must not be empty")
        if len(self.stored_key) != SCRAM_KEY_LEN or len(self.server_key) != SCRAM_KEY_LEN:
            raise ValueError(f"SCRAM StoredKey and ServerKey must be {SCRAM_KEY_LEN} bytes")

    @classmethod
    def parse(cls, text: str) -> ScramSecret:
        """Read ``SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`` (base64 fields).

        Raises ValueError; the message describes the problem without echoing the secret.
        """
        match = _SCRAM_SECRET_RE.fullmatch(text)
        if match is None:
            raise ValueError(
                "malformed SCRAM secret: expected "
                "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey> with base64 fields"
            )
        try:
            salt, stored_key, server_key = (
                base64.b64decode(match[name], validate=True)
                for name in ("salt", "stored_key", "server_key")
            )
        except binascii.Error:
            raise ValueError("malformed SCRAM secret: a field is not valid base64") from None
        try:
            return cls(int(match["iterations"]), salt, stored_key, server_key)
        except ValueError as exc:
            raise ValueError(f"malformed SCRAM secret: {exc}") from None

    @classmethod
    def from_password(
        cls, password: str, *, salt: bytes | None = None, iterations: int = DEFAULT_ITERATIONS
    ) -> ScramSecret:
        """Derive the secret PostgreSQL would store for ``password`` (random salt if none given)."""
        if salt is None:
            salt = os.urandom(DEFAULT_SALT_LEN)
        if not 1 <= iterations <= _MAX_SECRET_ITERATIONS:
            # Checked before hashing, which __post_init__ would only do after a long wait.
            raise ValueError(f"SCRAM iteration count must be 1..{_MAX_SECRET_ITERATIONS}")
        salted = salted_password(password, salt, iterations)
        client_key = client_key_from_salted(salted)
        return cls(iterations, salt, sha256(client_key), server_key_from_salted(salted))

    def to_text(self) -> str:
        """Format the secret as PostgreSQL stores it in ``pg_authid.rolpassword``."""
        salt, stored_key, server_key = (
            base64.b64encode(value).decode("ascii")
            for value in (self.salt, self.stored_key, self.server_key)
        )
        return f"{_SCRAM_PREFIX}{self.iterations}:{salt}${stored_key}:{server_key}"
