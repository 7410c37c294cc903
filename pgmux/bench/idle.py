"""A crowd of idle clients: each logs in (startup and md5 or cleartext auth) and then sits idle.

It speaks the few startup messages itself rather than use pgmux's protocol package, so a bug
there cannot skew the measurement of pgmux and PgBouncer alike. `hold_idle` opens the crowd,
calls `sample` while every connection is open, then closes them all.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

PROTOCOL_3_0 = 196608
AUTH_OK = 0
AUTH_CLEARTEXT = 3
AUTH_MD5 = 5
# Handshakes in flight at once: enough to be quick, few enough not to overflow the listen backlog.
CONCURRENT_LOGINS = 64
LOGIN_TIMEOUT_S = 60.0


class LoginError(Exception):
    """The server refused or broke off a login."""


@dataclass(frozen=True)
class Credentials:
    host: str
    port: int
    user: str
    password: str
    dbname: str


def startup_message(user: str, dbname: str) -> bytes:
    """StartupMessage for protocol 3.0."""
    params = f"user\0{user}\0database\0{dbname}\0\0".encode()
    return struct.pack("!II", 8 + len(params), PROTOCOL_3_0) + params


def password_message(password: str) -> bytes:
    """PasswordMessage ('p') carrying `password` as a C string."""
    body = password.encode() + b"\0"
    return b"p" + struct.pack("!I", 4 + len(body)) + body


def md5_password(user: str, password: str, salt: bytes) -> str:
    """PostgreSQL's md5 response: "md5" + md5(md5(password + user) + salt)."""
    inner = hashlib.md5((password + user).encode()).hexdigest()
    return "md5" + hashlib.md5(inner.encode() + salt).hexdigest()


def auth_response(creds: Credentials, body: bytes) -> bytes | None:
    """What to answer an Authentication ('R') message; None for AuthenticationOk."""
    (code,) = struct.unpack_from("!I", body)
    if code == AUTH_OK:
        return None
    if code == AUTH_CLEARTEXT:
        return password_message(creds.password)
    if code == AUTH_MD5:
        return password_message(md5_password(creds.user, creds.password, body[4:8]))
    raise LoginError(f"authentication request {code} is not supported by the idle client")


async def read_message(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    header = await reader.readexactly(5)
    (length,) = struct.unpack_from("!I", header, 1)
    return header[:1], await reader.readexactly(length - 4)


async def login(creds: Credentials) -> asyncio.StreamWriter:
    """Open one connection and return once the server says ReadyForQuery."""
    reader, writer = await asyncio.open_connection(creds.host, creds.port)
    try:
        writer.write(startup_message(creds.user, creds.dbname))
        while True:
            kind, body = await read_message(reader)
            if kind == b"R":
                answer = auth_response(creds, body)
                if answer is not None:
                    writer.write(answer)
            elif kind == b"E":
                raise LoginError(error_text(body))
            elif kind == b"Z":
                return writer
    except BaseException:
        writer.close()
        raise


def error_text(body: bytes) -> str:
    """The message field ('M') of an ErrorResponse body."""
    for field in body.split(b"\0"):
        if field[:1] == b"M":
            return field[1:].decode(errors="replace")
    return "server sent an ErrorResponse without a message"


async def open_idle(
    creds: Credentials, count: int
) -> tuple[list[asyncio.StreamWriter], str | None]:
    """Log in `count` clients; stop at the first failure and return the ones that made it."""
    gate = asyncio.Semaphore(CONCURRENT_LOGINS)

    async def one() -> asyncio.StreamWriter:
        async with gate:
            return await asyncio.wait_for(login(creds), LOGIN_TIMEOUT_S)

    tasks = [asyncio.ensure_future(one()) for _ in range(count)]
    await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
    for task in tasks:
        task.cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    writers = [w for w in done if isinstance(w, asyncio.StreamWriter)]
    # CancelledError is a BaseException, so this keeps only real failures.
    failures = [e for e in done if isinstance(e, Exception)]
    error = f"{type(failures[0]).__name__}: {failures[0]}" if failures else None
    return writers, error


async def close_all(writers: list[asyncio.StreamWriter]) -> None:
    """Send Terminate on every connection and close it."""
    for writer in writers:
        writer.write(b"X\0\0\0\4")
        writer.close()
    await asyncio.gather(*(w.wait_closed() for w in writers), return_exceptions=True)


def hold_idle(
    creds: Credentials, count: int, sample: Callable[[], int], settle_s: float = 1.0
) -> tuple[int, int, str | None]:
    """(connections opened, `sample()` taken while they sat idle, first login error or None)."""

    async def scenario() -> tuple[int, int, str | None]:
        writers, error = await open_idle(creds, count)
        try:
            await asyncio.sleep(settle_s)
            return len(writers), sample(), error
        finally:
            await close_all(writers)

    return asyncio.run(scenario())
