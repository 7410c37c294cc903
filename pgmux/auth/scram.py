"""SCRAM-SHA-256 (RFC 5802, RFC 7677) as PostgreSQL speaks it, without I/O.

``ScramServer`` authenticates a client of pgmux; ``ScramClient`` logs pgmux in to PostgreSQL.
Both take SASL payloads as bytes (the data of SASLInitialResponse and SASLResponse, or of
AuthenticationSASLContinue and AuthenticationSASLFinal) and return the payload to send back;
framing those messages is pgmux.protocol's job.

PostgreSQL's dialect: the user name in client-first-message is ignored (the startup packet's user
is the one that counts) and clients send it empty, ``n=``; pgmux offers no channel binding, so the
GS2 header is ``n,,`` or ``y,,``, and a client that picks SCRAM-SHA-256-PLUS (``p=``) is refused.

Contract: each method is one step of a fixed sequence. Any failure (a malformed message, a wrong
proof or signature, a call out of order) raises ``AuthError`` and ends the exchange for good. After
success ``ScramServer.client_key`` is the ClientKey recovered from the client's proof, and
``ScramClient`` accepts it plus the secret's ServerKey in place of a password: PgBouncer's SCRAM
pass-through, logging in to PostgreSQL as the client without ever knowing the password.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os

from pgmux.auth.secrets import (
    SCRAM_KEY_LEN,
    AuthError,
    ScramSecret,
    client_key_from_salted,
    hmac_sha256,
    salted_password,
    secret_kind,
    server_key_from_salted,
    sha256,
)

__all__ = [
    "MAX_ITERATIONS",
    "MIN_ITERATIONS",
    "ScramClient",
    "ScramServer",
    "auth_message",
    "client_proof",
    "recover_client_key",
    "server_signature",
]

# Bounds on a server's iteration count: below 1 is meaningless, and far above PostgreSQL's 4096
# default a hostile or broken server could make us burn seconds of CPU per login.
MIN_ITERATIONS = 1
MAX_ITERATIONS = 10_000_000
_NONCE_RAW_LEN = 18  # random bytes per nonce, as PostgreSQL and libpq use
_GS2_HEADER = b"n,,"  # what ScramClient sends: no channel binding, no authzid
_MAX_ERROR_TEXT = 200


# --- SCRAM arithmetic (RFC 5802 section 3) -------------------------------------------------------


def auth_message(client_first_bare: bytes, server_first: bytes, client_final_bare: bytes) -> bytes:
    """AuthMessage: client-first-message-bare, server-first-message and
    client-final-message-without-proof joined by commas."""
    return b",".join((client_first_bare, server_first, client_final_bare))


def client_proof(client_key: bytes, message: bytes) -> bytes:
    """ClientProof = ClientKey XOR HMAC(H(ClientKey), AuthMessage)."""
    return _xor(client_key, hmac_sha256(sha256(client_key), message))


def recover_client_key(stored_key: bytes, message: bytes, proof: bytes) -> bytes | None:
    """The ClientKey hidden in ``proof`` if it hashes to ``stored_key``, else None."""
    client_key = _xor(proof, hmac_sha256(stored_key, message))
    return client_key if hmac.compare_digest(sha256(client_key), stored_key) else None


def server_signature(server_key: bytes, message: bytes) -> bytes:
    """ServerSignature = HMAC(ServerKey, AuthMessage)."""
    return hmac_sha256(server_key, message)


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


# --- the order of an exchange --------------------------------------------------------------------


class _Steps:
    """The fixed sequence of messages in one exchange; a deviation or an error ends it for good."""

    def __init__(self, *names: str) -> None:
        self._names = names
        self._next = 0
        self._failed = False

    def begin(self, name: str) -> None:
        """Enter step ``name``; the exchange counts as failed until ``end`` is called."""
        expected = self._names[self._next] if self._next < len(self._names) else None
        failed, self._failed = self._failed, True
        if failed or name != expected:
            raise AuthError(f"unexpected SCRAM {name}")

    def end(self) -> None:
        self._failed = False
        self._next += 1

    @property
    def done(self) -> bool:
        return not self._failed and self._next == len(self._names)


# --- message parsing -----------------------------------------------------------------------------


def _attributes(message: bytes, what: str) -> list[tuple[bytes, bytes]]:
    """Split ``a=x,b=y`` into (name, value) pairs; every part must be letter, '=', value."""
    pairs = []
    for part in message.split(b","):
        if len(part) < 2 or not part[:1].isalpha() or part[1:2] != b"=":
            raise AuthError(f"malformed SCRAM {what}")
        pairs.append((part[:1], part[2:]))
    return pairs


def _attribute(pairs: list[tuple[bytes, bytes]], index: int, name: bytes, what: str) -> bytes:
    if index >= len(pairs) or pairs[index][0] != name:
        raise AuthError(f"malformed SCRAM {what}: expected attribute {name.decode()}=")
    return pairs[index][1]


def _b64decode(value: bytes, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error:
        raise AuthError(f"malformed SCRAM {what}: invalid base64") from None


def _is_printable(nonce: bytes) -> bool:
    """RFC 5802 ``printable``: %x21-2B / %x2D-7E, at least one character."""
    return bool(nonce) and all(0x21 <= byte <= 0x7E and byte != 0x2C for byte in nonce)


def _parse_iterations(value: bytes) -> int:
    # The length cap keeps int() away from absurdly long digit strings.
    if not value.isdigit() or len(value) > 10:
        raise AuthError("malformed SCRAM server-first-message: invalid iteration count")
    iterations = int(value)
    if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
        raise AuthError(
            f"SCRAM iteration count {iterations} is outside {MIN_ITERATIONS}..{MAX_ITERATIONS}"
        )
    return iterations


def _new_nonce(nonce: str | None) -> bytes:
    """The given nonce checked, or a fresh random one. ValueError: it is our own configuration."""
    if nonce is None:
        return base64.b64encode(os.urandom(_NONCE_RAW_LEN))
    if not nonce.isascii() or not _is_printable(nonce.encode("ascii")):
        raise ValueError("SCRAM nonce must be non-empty printable ASCII without commas")
    return nonce.encode("ascii")


def _safe_text(raw: bytes) -> str:
    """A peer's text made fit for a log line: printable ASCII, bounded length."""
    return "".join(chr(byte) if 0x20 <= byte < 0x7F else "?" for byte in raw[:_MAX_ERROR_TEXT])


# --- pgmux as the server -------------------------------------------------------------------------


def _server_secret(secret: ScramSecret | str) -> ScramSecret:
    if isinstance(secret, ScramSecret):
        return secret
    kind = secret_kind(secret)
    if kind == "md5":
        raise ValueError("cannot do SCRAM authentication with an md5 secret")
    if kind == "scram":
        # An auth_file entry may hold PostgreSQL's SCRAM secret text; treating it as a plain
        # password would silently lock the user out.
        return ScramSecret.parse(secret)
    return ScramSecret.from_password(secret)


def _parse_client_first(data: bytes) -> tuple[bytes, bytes, bytes]:
    """Split client-first-message into (GS2 header, client-first-message-bare, client nonce)."""
    what = "client-first-message"
    flag = data[:1]
    if flag == b"p":
        raise AuthError("client requires SCRAM channel binding (SCRAM-SHA-256-PLUS): not supported")
    if flag not in (b"n", b"y") or data[1:2] != b",":
        raise AuthError(f"malformed SCRAM {what}: invalid channel binding flag")
    if data[2:4] == b"a=":
        raise AuthError("SCRAM authorization identity (a=) is not supported")
    if data[2:3] != b",":
        raise AuthError(f"malformed SCRAM {what}: invalid GS2 header")
    bare = data[3:]
    pairs = _attributes(bare, what)
    if pairs[0][0] == b"m":
        raise AuthError("client requires an unsupported SCRAM extension (m=)")
    _attribute(pairs, 0, b"n", what)  # the user name: PostgreSQL ignores it, and so do we
    nonce = _attribute(pairs, 1, b"r", what)
    if not _is_printable(nonce):
        raise AuthError(f"malformed SCRAM {what}: nonce is not printable ASCII")
    return data[:3], bare, nonce


def _parse_client_final(data: bytes) -> tuple[bytes, bytes, bytes, bytes]:
    """Split client-final-message into (channel binding, nonce, message without proof, proof)."""
    what = "client-final-message"
    pairs = _attributes(data, what)
    binding = _b64decode(_attribute(pairs, 0, b"c", what), what)
    nonce = _attribute(pairs, 1, b"r", what)
    if len(pairs) < 3 or pairs[-1][0] != b"p":
        raise AuthError(f"malformed SCRAM {what}: the proof must be the last attribute")
    proof = _b64decode(pairs[-1][1], what)
    if len(proof) != SCRAM_KEY_LEN:
        raise AuthError(f"malformed SCRAM {what}: proof has the wrong length")
    return binding, nonce, data[: data.rindex(b",")], proof


class ScramServer:
    """Verifies one client's SCRAM-SHA-256 login against a secret.

    ``secret`` is a ScramSecret, PostgreSQL's SCRAM secret text, or a plain password (a secret is
    derived from it with a random salt). An md5 secret raises ValueError: it cannot verify SCRAM.
    """

    def __init__(self, secret: ScramSecret | str, *, nonce: str | None = None) -> None:
        self._secret = _server_secret(secret)
        self._server_nonce = _new_nonce(nonce)
        self._steps = _Steps("client-first-message", "client-final-message")
        self._gs2_header = b""
        self._client_first_bare = b""
        self._server_first = b""
        self._nonce = b""
        self._client_key: bytes | None = None

    @property
    def secret(self) -> ScramSecret:
        return self._secret

    @property
    def client_key(self) -> bytes:
        """The client's ClientKey; RuntimeError before the exchange has succeeded."""
        if self._client_key is None or not self._steps.done:
            raise RuntimeError("SCRAM exchange has not succeeded")
        return self._client_key

    def handle_client_first(self, data: bytes) -> bytes:
        """Take the SASLInitialResponse data; return server-first-message."""
        self._steps.begin("client-first-message")
        self._gs2_header, self._client_first_bare, client_nonce = _parse_client_first(data)
        self._nonce = client_nonce + self._server_nonce
        salt = base64.b64encode(self._secret.salt)
        self._server_first = b"r=%s,s=%s,i=%d" % (self._nonce, salt, self._secret.iterations)
        self._steps.end()
        return self._server_first

    def handle_client_final(self, data: bytes) -> bytes:
        """Take the SASLResponse data; check the proof; return server-final-message."""
        self._steps.begin("client-final-message")
        binding, nonce, without_proof, proof = _parse_client_final(data)
        if binding != self._gs2_header:
            raise AuthError("SCRAM channel binding does not match the client-first-message")
        if nonce != self._nonce:
            raise AuthError("SCRAM nonce mismatch")
        message = auth_message(self._client_first_bare, self._server_first, without_proof)
        client_key = recover_client_key(self._secret.stored_key, message, proof)
        if client_key is None:
            raise AuthError("SCRAM authentication failed: wrong password")
        self._client_key = client_key
        self._steps.end()
        return b"v=" + base64.b64encode(server_signature(self._secret.server_key, message))


# --- pgmux as the client -------------------------------------------------------------------------


def _parse_server_first(data: bytes, client_nonce: bytes) -> tuple[bytes, bytes, int]:
    """Split server-first-message into (combined nonce, salt, iteration count)."""
    what = "server-first-message"
    pairs = _attributes(data, what)
    if pairs[0][0] == b"m":
        raise AuthError("server requires an unsupported SCRAM extension (m=)")
    nonce = _attribute(pairs, 0, b"r", what)
    if not _is_printable(nonce):
        raise AuthError(f"malformed SCRAM {what}: nonce is not printable ASCII")
    if len(nonce) <= len(client_nonce) or not nonce.startswith(client_nonce):
        raise AuthError("SCRAM nonce mismatch: the server's nonce does not extend ours")
    salt = _b64decode(_attribute(pairs, 1, b"s", what), what)
    iterations = _parse_iterations(_attribute(pairs, 2, b"i", what))
    return nonce, salt, iterations


class ScramClient:
    """Logs in to a SCRAM-SHA-256 server with a password, or with a ClientKey and ServerKey."""

    def __init__(
        self,
        *,
        password: str | None = None,
        client_key: bytes | None = None,
        server_key: bytes | None = None,
        nonce: str | None = None,
    ) -> None:
        if password is None:
            if client_key is None or server_key is None:
                raise ValueError("ScramClient needs a password or both client_key and server_key")
            if len(client_key) != SCRAM_KEY_LEN or len(server_key) != SCRAM_KEY_LEN:
                raise ValueError(f"SCRAM ClientKey and ServerKey must be {SCRAM_KEY_LEN} bytes")
        elif client_key is not None or server_key is not None:
            raise ValueError("ScramClient takes a password or keys, not both")
        self._password = password
        self._keys = (client_key, server_key)
        self._nonce = _new_nonce(nonce)
        self._steps = _Steps("client-first-message", "server-first-message", "server-final-message")
        self._server_signature = b""

    @property
    def _client_first_bare(self) -> bytes:
        return b"n=,r=" + self._nonce

    def client_first(self) -> bytes:
        """The SASLInitialResponse data: ``n,,n=,r=<nonce>``."""
        self._steps.begin("client-first-message")
        self._steps.end()
        return _GS2_HEADER + self._client_first_bare

    def handle_server_first(self, data: bytes) -> bytes:
        """Take AuthenticationSASLContinue data; return client-final-message."""
        self._steps.begin("server-first-message")
        nonce, salt, iterations = _parse_server_first(data, self._nonce)
        client_key, server_key = self._derive_keys(salt, iterations)
        without_proof = b"c=" + base64.b64encode(_GS2_HEADER) + b",r=" + nonce
        message = auth_message(self._client_first_bare, data, without_proof)
        self._server_signature = server_signature(server_key, message)
        self._steps.end()
        return without_proof + b",p=" + base64.b64encode(client_proof(client_key, message))

    def handle_server_final(self, data: bytes) -> None:
        """Take AuthenticationSASLFinal data; AuthError unless it proves the server's identity."""
        self._steps.begin("server-final-message")
        what = "server-final-message"
        if data.startswith(b"e="):
            error = _safe_text(data[2:].split(b",", 1)[0])
            raise AuthError(f"server rejected SCRAM authentication: {error}")
        signature = _b64decode(_attribute(_attributes(data, what), 0, b"v", what), what)
        if not hmac.compare_digest(signature, self._server_signature):
            raise AuthError("SCRAM server signature is wrong: the server does not hold our secret")
        self._steps.end()

    def _derive_keys(self, salt: bytes, iterations: int) -> tuple[bytes, bytes]:
        """ClientKey and ServerKey: given ones (salt and iterations are then not needed) or
        derived from the password."""
        client_key, server_key = self._keys
        if client_key is not None and server_key is not None:
            return client_key, server_key
        assert self._password is not None  # __init__ guarantees a password or both keys
        salted = salted_password(self._password, salt, iterations)
        return client_key_from_salted(salted), server_key_from_salted(salted)
