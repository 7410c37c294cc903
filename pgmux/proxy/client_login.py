"""A client's login: startup packet, database and user, authentication, and the welcome.

This is the startup state machine, run once per client as a coroutine before the forwarding
phase is entered. Every failure is a :class:`PgmuxError` with the SQLSTATE PostgreSQL itself
would use, sent to the client before its connection is closed. Like PostgreSQL, an unknown user
and a wrong password look the same to the client (28P01), so the error reveals nothing more.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import logging
import os
import secrets as random_secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgmux.auth.md5 import verify_md5_response
from pgmux.auth.scram import ScramServer
from pgmux.auth.secrets import DEFAULT_SALT_LEN, AuthError, ScramSecret, secret_kind
from pgmux.protocol import messages as m
from pgmux.protocol.errors import (
    FEATURE_NOT_SUPPORTED,
    INVALID_AUTHORIZATION_SPECIFICATION,
    INVALID_PASSWORD,
    PROTOCOL_VIOLATION,
    SYNTAX_ERROR,
    TOO_MANY_CONNECTIONS,
    PgmuxError,
)
from pgmux.protocol.startup import (
    CancelRequest,
    GSSENCRequest,
    SSLRequest,
    StartupMessage,
    negotiate_protocol_version,
    parse_startup_packet,
)
from pgmux.proxy.client import ClientConnection
from pgmux.proxy.params import startup_parameters

if TYPE_CHECKING:
    from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux.client")

ADMIN_DATABASES = ("pgmux", "pgbouncer")
_SALT_KEY = os.urandom(32)  # keys the per-user salts of _stable_salt for this process


@dataclass
class Credentials:
    """What a client's login proved, usable for logging in to the server as that user."""

    password: str | None = None
    client_key: bytes | None = None
    server_key: bytes | None = None


async def read_startup(client: ClientConnection) -> StartupMessage | None:
    """The StartupMessage, after answering SSL/GSS requests; None for a CancelRequest."""
    reader = client.reader
    assert reader is not None
    negotiated = False
    while True:
        packet = await reader.read_raw(parse_startup_packet)
        if isinstance(packet, (SSLRequest, GSSENCRequest)):
            if negotiated:
                raise PgmuxError(PROTOCOL_VIOLATION, "encryption requested twice")
            negotiated = True
            client.send(b"N")  # no TLS/GSS yet: the client may go on in plain text
            continue
        if isinstance(packet, CancelRequest):
            client.pooler.cancel(packet.process_id, packet.secret_key)
            return None
        assert isinstance(packet, StartupMessage)
        return packet


def check_protocol(client: ClientConnection, startup: StartupMessage) -> None:
    """Ask a newer client to fall back to 3.0 and drop protocol options we do not know."""
    unknown = sorted(k for k in startup.parameters if k.startswith("_pq_."))
    if startup.minor_version > 0 or unknown:
        client.send(negotiate_protocol_version(0, unknown))


async def login(pooler: Pooler, client: ClientConnection) -> None:
    startup = await read_startup(client)
    if startup is None:
        client.close("cancel request handled")
        return
    check_protocol(client, startup)
    params = startup.parameters
    user = params.get("user", "")
    if not user:
        raise PgmuxError(
            INVALID_AUTHORIZATION_SPECIFICATION,
            "no PostgreSQL user name specified in startup packet",
        )
    database = params.get("database") or user
    client.user, client.database = user, database
    client.application_name = params.get("application_name", "")
    if "replication" in params and params["replication"].lower() not in ("false", "0", "off"):
        raise PgmuxError(FEATURE_NOT_SUPPORTED, "replication connections are not supported")
    if pooler.client_limit_reached(client):
        raise PgmuxError(TOO_MANY_CONNECTIONS, "no more connections allowed (max_client_conn)")
    if database in ADMIN_DATABASES:
        await _admin_login(pooler, client, user)
        return
    entry = pooler.resolve_database(database)
    credentials = await authenticate(pooler, client, user, database)
    try:
        client.startup = startup_parameters(params, pooler.ignore_startup_parameters)
    except ValueError as exc:  # a malformed ``options``: PostgreSQL's FATAL 42601, not a crash
        raise PgmuxError(
            SYNTAX_ERROR, str(exc), hint="options takes space-separated -c name=value settings"
        ) from None
    pool = pooler.get_pool(entry, database, user, credentials)
    await pooler.welcome(client, pool)


async def _admin_login(pooler: Pooler, client: ClientConnection, user: str) -> None:
    if user not in pooler.admin_users and user not in pooler.stats_users:
        await authenticate(pooler, client, user, client.database)  # same error as elsewhere
        raise PgmuxError(
            INVALID_AUTHORIZATION_SPECIFICATION,
            f"not allowed to use the admin console: add {user!r} to admin_users or stats_users",
        )
    await authenticate(pooler, client, user, client.database)
    await pooler.admin_welcome(client)


async def authenticate(
    pooler: Pooler, client: ClientConnection, user: str, database: str
) -> Credentials:
    """Run the configured auth_type against the user's secret; return server credentials."""
    auth_type = pooler.auth_type
    secret = await pooler.lookup_secret(user, database)
    if auth_type == "any":
        return Credentials()
    if auth_type == "trust":
        if secret is None and pooler.has_user_source:
            raise PgmuxError(INVALID_AUTHORIZATION_SPECIFICATION, f'role "{user}" does not exist')
        return Credentials(password=secret if secret and secret_kind(secret) != "scram" else None)
    if auth_type == "plain":
        return await _auth_plain(client, user, secret)
    kind = secret_kind(secret) if secret is not None else "plain"
    if auth_type == "md5" and kind != "scram":
        return await _auth_md5(client, user, secret)
    if kind == "md5":
        log.warning(
            "user %r has an md5 secret, which cannot be used for SCRAM: use auth_type = md5 "
            "or store a SCRAM or plain secret",
            user,
        )
        secret = None
    return await _auth_scram(client, user, secret)


def _password_failed(user: str) -> PgmuxError:
    return PgmuxError(INVALID_PASSWORD, f'password authentication failed for user "{user}"')


async def _read_password_message(client: ClientConnection) -> bytes:
    reader = client.reader
    assert reader is not None
    kind, body = await reader.read_message()
    if kind != ord("p"):
        raise PgmuxError(
            PROTOCOL_VIOLATION,
            f"expected a password response, got message type {chr(kind)!r}",
        )
    return body


async def _read_password(client: ClientConnection) -> bytes:
    """A cleartext or md5 PasswordMessage's password (08P01 if it is not one NUL-ended string)."""
    try:
        return m.parse_password(await _read_password_message(client))
    except ValueError as exc:
        raise PgmuxError(PROTOCOL_VIOLATION, f"invalid password packet: {exc}") from None


async def _auth_plain(client: ClientConnection, user: str, secret: str | None) -> Credentials:
    client.send(m.authentication(m.AUTH_CLEARTEXT_PASSWORD))
    password = (await _read_password(client)).decode("utf-8", "replace")
    if secret is None or not _plain_matches(user, password, secret):
        raise _password_failed(user)
    return Credentials(password=password)


def _plain_matches(user: str, password: str, secret: str) -> bool:
    kind = secret_kind(secret)
    if kind == "plain":
        return random_secrets.compare_digest(password.encode(), secret.encode())
    if kind == "md5":
        from pgmux.auth.md5 import md5_secret

        return random_secrets.compare_digest(md5_secret(user, password), secret)
    stored = ScramSecret.parse(secret)
    derived = ScramSecret.from_password(password, salt=stored.salt, iterations=stored.iterations)
    return random_secrets.compare_digest(derived.stored_key, stored.stored_key)


async def _auth_md5(client: ClientConnection, user: str, secret: str | None) -> Credentials:
    salt = os.urandom(4)
    client.send(m.authentication(m.AUTH_MD5_PASSWORD, salt))
    response = await _read_password(client)
    if secret is None or not verify_md5_response(user, secret, salt, response):
        raise _password_failed(user)
    # An md5 secret (or the password) is enough to answer the server's md5 challenge.
    return Credentials(password=secret)


def _stable_salt(user: str) -> bytes:
    """The salt offered to ``user`` when no SCRAM secret is stored (unknown user, plain password).

    Like PostgreSQL's scram_mock_salt() it is the same on every attempt, as a stored secret's
    salt is, so that comparing two attempts does not tell which users exist.
    """
    return hmac.new(_SALT_KEY, user.encode(), hashlib.sha256).digest()[:DEFAULT_SALT_LEN]


@functools.lru_cache(maxsize=4096)
def _derived_secret(user: str, password: str) -> ScramSecret:
    """The SCRAM secret of a plain auth_file password, derived once (4096 PBKDF2 rounds each
    time would cap logins at a few hundred a second); the salt is stable per user."""
    return ScramSecret.from_password(password, salt=_stable_salt(user))


async def _auth_scram(client: ClientConnection, user: str, secret: str | None) -> Credentials:
    # An unknown user still gets a full exchange against a throwaway secret, so that the
    # client cannot tell "no such user" from "wrong password".
    known = secret is not None
    if secret is None:
        # No key derivation for a user that does not exist: random keys fail the same way.
        salt = _stable_salt(user)
        mock = ScramSecret(4096, salt, os.urandom(32), os.urandom(32))
        scram = ScramServer(mock)
    elif secret_kind(secret) == "scram":
        scram = ScramServer(secret)
    else:
        scram = ScramServer(_derived_secret(user, secret))
    client.send(m.authentication_sasl(["SCRAM-SHA-256"]))
    try:
        mechanism, first = m.parse_sasl_initial_response(await _read_password_message(client))
    except ValueError as exc:
        raise PgmuxError(PROTOCOL_VIOLATION, f"malformed SASL message: {exc}") from None
    if mechanism != "SCRAM-SHA-256":
        raise PgmuxError(
            PROTOCOL_VIOLATION,
            f"client selected an invalid SASL authentication mechanism {mechanism!r}",
        )
    try:
        client.send(m.authentication(m.AUTH_SASL_CONTINUE, scram.handle_client_first(first)))
        final = await _read_password_message(client)
        server_final = scram.handle_client_final(final)
    except AuthError:
        raise _password_failed(user) from None
    if not known:
        raise _password_failed(user)
    client.send(m.authentication(m.AUTH_SASL_FINAL, server_final))
    assert secret is not None
    if secret_kind(secret) == "plain":
        return Credentials(password=secret)
    return Credentials(client_key=scram.client_key, server_key=scram.secret.server_key)
