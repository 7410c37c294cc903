#!/usr/bin/env python3
"""The Python cost of one transaction, or one login, through pgmux, sockets left out.

`python3 benchmarks/hotpath.py [N]` relays N `pgbench -S`-shaped transactions (a simple Query
out, RowDescription, DataRow, CommandComplete and ReadyForQuery back) between a client and a
server connection of a transaction-mode pool, with transports that only count writes. It
prints microseconds per transaction: what pgmux's own code costs, without the kernel, uvloop
or cache misses that a real run adds (compare "pooler CPU s" in `pgmux bench`). Use it to
measure a change to the hot path before running the real benchmark.

`python3 benchmarks/hotpath.py [N] --login` does the same for N logins the way `pgbench -C`
makes them with md5 (SSLRequest refused, StartupMessage, md5 password, AuthenticationOk and
the rest of the welcome), through the real login coroutine on uvloop, pgmux's event loop.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# After the sys.path line: a checkout's pgmux comes first.
from pgmux.auth.md5 import md5_response, md5_secret
from pgmux.config import parse_ini
from pgmux.protocol import messages as m
from pgmux.protocol.startup import startup_message
from pgmux.proxy.buffers import SHARED
from pgmux.proxy.client import ClientConnection
from pgmux.proxy.client_login import Credentials
from pgmux.proxy.pooler import Pooler
from pgmux.testing.fakes import RecordingTransport, feed, transaction_pair

CONFIG = """
[databases]
app = host=127.0.0.1 port=5432 dbname=app

[pgbouncer]
auth_type = trust
pool_mode = transaction
"""
QUERY = m.query("SELECT abalance FROM pgbench_accounts WHERE aid = 12345;")
REPLY = (
    m.row_description([("abalance", 23)])
    + m.data_row([123])
    + m.command_complete("SELECT 1")
    + m.ready_for_query()
)


@dataclass
class Result:
    transactions: int
    seconds: float
    client_writes: int
    server_writes: int
    released: bool  # the server went back to the pool after the last transaction

    @property
    def us_per_transaction(self) -> float:
        return self.seconds / self.transactions * 1e6


def run(transactions: int) -> Result:
    async def relay() -> Result:
        pooler = Pooler(parse_ini(CONFIG), asyncio.get_running_loop())
        client, server = transaction_pair(pooler)
        view = SHARED.view
        started = time.perf_counter()
        for _ in range(transactions):
            view[: len(QUERY)] = QUERY
            client.buffer_updated(len(QUERY))
            view[: len(REPLY)] = REPLY
            server.buffer_updated(len(REPLY))
        seconds = time.perf_counter() - started
        return Result(
            transactions,
            seconds,
            client.transport.writes,  # type: ignore[union-attr]
            server.transport.writes,  # type: ignore[union-attr]
            client.server is None and server in server.pool.sv_idle,
        )

    return uvloop.run(relay())


USER, PASSWORD = "bench", "bench-password"
SSL_REQUEST = struct.pack("!ii", 8, 80877103)
STARTUP = startup_message({"user": USER, "database": "app", "application_name": "pgbench"})
AUTH_OK = m.AUTHENTICATION_OK


@dataclass
class LoginResult:
    logins: int
    seconds: float
    welcomed: int  # logins that ended in AuthenticationOk and the forwarding phase

    @property
    def us_per_login(self) -> float:
        return self.seconds / self.logins * 1e6


async def _md5_login(pooler: Pooler) -> bool:
    """One client through SSLRequest, startup, md5 and the welcome; True if it got in."""
    client = ClientConnection(pooler)
    transport = RecordingTransport()
    client.connection_made(transport)  # type: ignore[arg-type]  # starts the login task
    feed(client, SSL_REQUEST)
    await asyncio.sleep(0)
    feed(client, STARTUP)
    for _ in range(10):  # the login task asks for the password within a few loop turns
        if transport.last[:1] == b"R":
            break
        await asyncio.sleep(0)
    salt = transport.last[-4:]
    feed(client, m.password_message(md5_response(USER, PASSWORD, salt) + b"\x00"))
    assert client.login_task is not None
    await client.login_task
    welcomed = client.reader is None and transport.last.startswith(AUTH_OK)
    pooler.client_lost(client)
    return welcomed


def run_logins(logins: int) -> LoginResult:
    async def log_in() -> LoginResult:
        pooler = Pooler(parse_ini(CONFIG), asyncio.get_running_loop())
        pooler.auth_type = "md5"
        pooler.userlist = {USER: md5_secret(USER, PASSWORD)}
        entry = pooler.resolve_database("app")
        pool = pooler.get_pool(entry, "app", USER, Credentials())
        # As if a server had logged in already, reporting what pgbench's clients ask for.
        pool.server_params = {"client_encoding": "UTF8", "application_name": "pgbench"}
        started = time.perf_counter()
        welcomed = 0
        for _ in range(logins):
            welcomed += await _md5_login(pooler)
        return LoginResult(logins, time.perf_counter() - started, welcomed)

    return uvloop.run(log_in())


def main(argv: list[str]) -> int:
    login = "--login" in argv
    numbers = [a for a in argv if a != "--login"]
    count = int(numbers[0]) if numbers else (20_000 if login else 200_000)
    if login:
        logins = run_logins(count)
        print(f"{logins.us_per_login:.1f} µs per md5 login (pgmux's Python only)")
    else:
        result = run(count)
        print(f"{result.us_per_transaction:.2f} µs per transaction (pgmux's Python only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
