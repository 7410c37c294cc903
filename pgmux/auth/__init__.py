"""Authentication without I/O: SCRAM-SHA-256 both ways, md5, stored secrets and the auth_file.

Contract: nothing here touches sockets, event loops or clocks; callers hand in message payloads
and get back payloads to send, or an ``AuthError`` whose message is safe to log.
"""

from __future__ import annotations

from pgmux.auth.md5 import md5_response, md5_secret, verify_md5_response
from pgmux.auth.saslprep import saslprep
from pgmux.auth.scram import ScramClient, ScramServer
from pgmux.auth.secrets import AuthError, ScramSecret, SecretKind, secret_kind
from pgmux.auth.userlist import UserlistError, load_userlist, parse_userlist

__all__ = [
    "AuthError",
    "ScramClient",
    "ScramSecret",
    "ScramServer",
    "SecretKind",
    "UserlistError",
    "load_userlist",
    "md5_response",
    "md5_secret",
    "parse_userlist",
    "saslprep",
    "secret_kind",
    "verify_md5_response",
]
