"""Logging in to PostgreSQL: connect, send the startup packet, answer the auth challenge.

Supported server methods: trust, cleartext password, md5 and SCRAM-SHA-256 (with a password, or
with the ClientKey/ServerKey a client proved during its own SCRAM login, which is how pgmux can
log in as that client without ever seeing the password). Anything else (Kerberos, GSS, SSPI,
SCRAM-SHA-256-PLUS only) ends the attempt with an error that names the method.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pgmux.auth.md5 import md5_response
from pgmux.auth.scram import ScramClient
from pgmux.pool.pool import Pool
from pgmux.protocol import messages as m
from pgmux.protocol.errors import (
    CONNECTION_FAILURE,
    FEATURE_NOT_SUPPORTED,
    INVALID_PASSWORD,
    PgmuxError,
    ServerError,
)
from pgmux.protocol.startup import startup_message
from pgmux.proxy.server import ServerConnection

if TYPE_CHECKING:
    from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux.server")


@dataclass
class ServerTarget:
    """Where and as whom a pool logs in."""

    host: str | None
    port: int
    dbname: str
    user: str
    password: str | None = None  # plain password, or an md5 secret (md5 auth works with it)
    client_key: bytes | None = None  # SCRAM pass-through keys learnt from a client login
    server_key: bytes | None = None
    startup_extra: tuple[tuple[str, str], ...] = ()

    @property
    def socket_path(self) -> str | None:
        if self.host is None or self.host.startswith("/"):
            directory = self.host or "/tmp"
            return f"{directory}/.s.PGSQL.{self.port}"
        return None


async def open_server(pooler: Pooler, pool: Pool, target: ServerTarget) -> ServerConnection:
    """A logged-in server connection (still in the pool's sv_login list)."""
    loop = pooler.loop
    server = ServerConnection(pooler, pool)
    try:
        await asyncio.wait_for(_connect_and_login(loop, server, target), pooler.connect_timeout)
    except TimeoutError:
        server.close("connect timeout")
        raise PgmuxError(
            CONNECTION_FAILURE,
            f"could not connect to server {_where(target)} within server_connect_timeout",
        ) from None
    except OSError as exc:
        server.close("connect failed")
        raise PgmuxError(
            CONNECTION_FAILURE, f"could not connect to server {_where(target)}: {exc.strerror}"
        ) from None
    except BaseException:
        server.close("login failed")
        raise
    return server


def _where(target: ServerTarget) -> str:
    return target.socket_path or f"{target.host}:{target.port}"


async def _connect_and_login(
    loop: asyncio.AbstractEventLoop, server: ServerConnection, target: ServerTarget
) -> None:
    path = target.socket_path
    if path is not None:
        await loop.create_unix_connection(lambda: server, path)
    else:
        await loop.create_connection(lambda: server, target.host or "localhost", target.port)
    assert server.transport is not None and server.reader is not None
    params = {"user": target.user, "database": target.dbname, **dict(target.startup_extra)}
    server.transport.write(startup_message(params))
    await _authenticate(server, target)
    await _read_until_ready(server)
    server.reader = None


async def _authenticate(server: ServerConnection, target: ServerTarget) -> None:
    assert server.reader is not None and server.transport is not None
    scram: ScramClient | None = None
    while True:
        kind, body = await server.reader.read_message()
        if kind == ord("E"):
            raise ServerError(m.parse_error_fields(body))
        if kind != ord("R"):
            if kind in (ord("N"), ord("v")):
                continue
            raise PgmuxError(CONNECTION_FAILURE, "server sent an unexpected message at login")
        code, payload = m.parse_authentication(body)
        if code == m.AUTH_OK:
            return
        if code == m.AUTH_CLEARTEXT_PASSWORD:
            server.transport.write(m.password_message(_password(target) + b"\x00"))
        elif code == m.AUTH_MD5_PASSWORD:
            response = md5_response(target.user, _password(target).decode(), payload[:4])
            server.transport.write(m.password_message(response + b"\x00"))
        elif code == m.AUTH_SASL:
            scram = _start_scram(server, target, payload)
        elif code == m.AUTH_SASL_CONTINUE and scram is not None:
            server.transport.write(m.password_message(scram.handle_server_first(payload)))
        elif code == m.AUTH_SASL_FINAL and scram is not None:
            scram.handle_server_final(payload)
        else:
            raise PgmuxError(
                FEATURE_NOT_SUPPORTED,
                f"server requested an authentication method pgmux does not support "
                f"({_method_name(code)}); configure md5, scram-sha-256, password or trust "
                f"for user {target.user!r} in pg_hba.conf",
            )


def _password(target: ServerTarget) -> bytes:
    if target.password is None or target.password.startswith("SCRAM-SHA-256$"):
        raise PgmuxError(
            INVALID_PASSWORD,
            f"no password known for server login as {target.user!r}: set password= in "
            "[databases] or a plain/md5 entry in auth_file",
        )
    return target.password.encode()


def _start_scram(server: ServerConnection, target: ServerTarget, payload: bytes) -> ScramClient:
    assert server.transport is not None
    mechanisms = m.parse_sasl_mechanisms(payload)
    if "SCRAM-SHA-256" not in mechanisms:
        raise PgmuxError(
            FEATURE_NOT_SUPPORTED,
            f"server offers only SASL mechanisms {mechanisms}; pgmux supports SCRAM-SHA-256",
        )
    if target.client_key is not None and target.server_key is not None:
        scram = ScramClient(client_key=target.client_key, server_key=target.server_key)
    else:
        if target.password is not None and target.password.startswith("md5"):
            raise PgmuxError(
                INVALID_PASSWORD,
                f"server wants SCRAM for {target.user!r} but only an md5 secret is known",
            )
        scram = ScramClient(password=_password(target).decode())
    server.transport.write(m.sasl_initial_response("SCRAM-SHA-256", scram.client_first()))
    return scram


def _method_name(code: int) -> str:
    return {
        m.AUTH_KERBEROS_V5: "Kerberos V5",
        m.AUTH_GSS: "GSSAPI",
        m.AUTH_SSPI: "SSPI",
    }.get(code, f"authentication request {code}")


async def _read_until_ready(server: ServerConnection) -> None:
    assert server.reader is not None
    while True:
        kind, body = await server.reader.read_message()
        if kind == ord("S"):
            name, value = m.parse_parameter_status(body)
            server.tracked[name] = value
        elif kind == ord("K"):
            server.backend_pid, server.backend_key = m.parse_backend_key_data(body)
        elif kind == ord("Z"):
            server.tx_status = body[0]
            return
        elif kind == ord("E"):
            raise ServerError(m.parse_error_fields(body))
