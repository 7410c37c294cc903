"""PostgreSQL's md5 password authentication, both directions.

Contract: a stored md5 secret is ``"md5" + md5hex(password + user)``; the client answers an
AuthenticationMD5Password challenge (a 4-byte salt) with ``b"md5" + md5hex(md5hex(password + user)
+ salt)`` (the PasswordMessage payload without its trailing NUL). Every function that needs the
password also accepts the md5 secret in its place, which is what lets a pooler holding only
``"md5..."`` entries in its auth_file log in to servers and check clients. Unlike SCRAM, md5 applies
no SASLprep: passwords are hashed as UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import hmac

from pgmux.auth.secrets import secret_kind

__all__ = ["md5_response", "md5_secret", "verify_md5_response"]


def _md5hex(data: bytes) -> str:
    # usedforsecurity=False: the wire protocol dictates MD5, and FIPS-mode builds of OpenSSL
    # refuse plain hashlib.md5() otherwise.
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def md5_secret(user: str, password: str) -> str:
    """The md5 secret PostgreSQL stores for ``user`` with ``password``."""
    return "md5" + _md5hex(password.encode("utf-8") + user.encode("utf-8"))


def md5_response(user: str, secret_or_password: str, salt: bytes) -> bytes:
    """The PasswordMessage payload (no trailing NUL) answering an md5 challenge with ``salt``.

    Raises ValueError for a SCRAM secret, from which no md5 answer can be computed.
    """
    kind = secret_kind(secret_or_password)
    if kind == "scram":
        raise ValueError("cannot do md5 authentication with a SCRAM secret")
    secret = secret_or_password if kind == "md5" else md5_secret(user, secret_or_password)
    # The inner hash goes in as its 32 hex digits, not the "md5" prefix.
    return b"md5" + _md5hex(secret[3:].encode("ascii") + salt).encode("ascii")


def verify_md5_response(user: str, secret_or_password: str, salt: bytes, response: bytes) -> bool:
    """Whether a client's PasswordMessage payload (no trailing NUL) answers the challenge.

    Raises ValueError for a SCRAM secret, like ``md5_response``.
    """
    return hmac.compare_digest(md5_response(user, secret_or_password, salt), response)
