#!/usr/bin/env python3
"""The Python cost of one transaction through pgmux's forwarding path, sockets left out.

`python3 benchmarks/hotpath.py [N]` relays N `pgbench -S`-shaped transactions (a simple Query
out, RowDescription, DataRow, CommandComplete and ReadyForQuery back) between a client and a
server connection of a transaction-mode pool, with transports that only count writes. It
prints microseconds per transaction: what pgmux's own code costs, without the kernel, uvloop
or cache misses that a real run adds (compare "pooler CPU s" in `pgmux bench`). Use it to
measure a change to the hot path before running the real benchmark.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# After the sys.path line: a checkout's pgmux comes first.
from pgmux.config import parse_ini
from pgmux.protocol import messages as m
from pgmux.proxy.buffers import SHARED
from pgmux.proxy.client import ClientConnection
from pgmux.proxy.client_login import Credentials
from pgmux.proxy.params import client_parameters
from pgmux.proxy.pooler import Pooler
from pgmux.proxy.server import ServerConnection
from pgmux.proxy.statements import STATEMENT_INTERCEPT, ClientStatements

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


class CountingTransport:
    """Stands in for a socket's transport: counts writes, never buffers."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes | memoryview) -> None:
        self.writes += 1

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5432)

    def is_closing(self) -> bool:
        return False


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


def _logged_in_pair(pooler: Pooler) -> tuple[ClientConnection, ServerConnection]:
    """A client past its login and an idle server of its transaction-mode pool."""
    entry = pooler.resolve_database("app")
    pool = pooler.get_pool(entry, "app", "bench", Credentials())
    pool.server_params = {"client_encoding": "UTF8", "DateStyle": "ISO, MDY"}
    server = ServerConnection(pooler, pool)
    server.connection_made(CountingTransport())  # type: ignore[arg-type]
    server.reader = None
    pool.add_server(server)
    pool.server_ready(server, time.monotonic())
    client = ClientConnection(pooler)
    client.transport = CountingTransport()  # type: ignore[assignment]
    client.reader = None
    client.pool, client.stats = pool, pool.stats
    client.pool_mode, client.releases = "transaction", True
    client.statements = ClientStatements(pooler.max_client_prepared_statements)
    client.scanner.intercept = STATEMENT_INTERCEPT
    client.params = client_parameters(pool.server_params, {}, pooler.tracked)
    server.tracked = dict(client.params)
    pool.add_client(client)
    return client, server


def run(transactions: int) -> Result:
    async def relay() -> Result:
        pooler = Pooler(parse_ini(CONFIG), asyncio.get_running_loop())
        client, server = _logged_in_pair(pooler)
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

    return asyncio.run(relay())


def main(argv: list[str]) -> int:
    transactions = int(argv[0]) if argv else 200_000
    result = run(transactions)
    print(f"{result.us_per_transaction:.2f} µs per transaction (pgmux's Python only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
