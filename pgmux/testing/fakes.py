"""A stand-in for the transports uvloop gives pgmux's connections, and a pair wired with it.

For tests and benchmarks that drive ``ClientConnection``/``ServerConnection`` directly, with no
socket and no PostgreSQL: bytes go in through :func:`feed`, and what pgmux writes back is
counted, the last write kept. :func:`transaction_pair` gives a logged-in client and an idle
server of a transaction-mode pool, as if both had logged in.
"""

from __future__ import annotations

import struct
import time
from typing import TYPE_CHECKING, Any

from pgmux.proxy.buffers import SHARED

if TYPE_CHECKING:
    from pgmux.proxy.client import ClientConnection
    from pgmux.proxy.pooler import Pooler
    from pgmux.proxy.server import ServerConnection


class RecordingTransport:
    """Counts writes and keeps the last one; never buffers, never blocks."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        self.last = bytes(data)

    def error_codes(self) -> list[str]:
        """SQLSTATEs of the ErrorResponses in the last write."""
        data, pos, codes = self.last, 0, []
        while pos + 5 <= len(data):
            (length,) = struct.unpack_from("!i", data, pos + 1)
            if data[pos : pos + 1] == b"E":
                fields = data[pos + 5 : pos + 1 + length].split(b"\x00")
                codes += [field[1:].decode() for field in fields if field[:1] == b"C"]
            pos += 1 + length
        return codes

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str, default: object = None) -> object:
        return ("127.0.0.1", 5432)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


def feed(protocol: Any, data: bytes) -> None:
    """Deliver ``data`` as one read, the way uvloop does: into the shared buffer, then
    ``buffer_updated``."""
    SHARED.view[: len(data)] = data
    protocol.buffer_updated(len(data))


def transaction_pair(
    pooler: Pooler, database: str = "app", user: str = "bench", *, tracked: bool = False
) -> tuple[ClientConnection, ServerConnection]:
    """A client past its login and an idle server of its transaction-mode pool.

    The server has just been released, so no ``server_check_query`` is due; with ``tracked``
    the client counts as one that has used named statements, so its replies are tracked.
    """
    from pgmux.proxy.client import ClientConnection
    from pgmux.proxy.client_login import Credentials
    from pgmux.proxy.server import ServerConnection
    from pgmux.proxy.welcome import join_pool

    pool = pooler.get_pool(pooler.resolve_database(database), database, user, Credentials())
    assert pool.settings.pool_mode == "transaction", "configure pool_mode = transaction"
    pool.server_params = {"client_encoding": "UTF8", "DateStyle": "ISO, MDY"}
    server = ServerConnection(pooler, pool)
    server.connection_made(RecordingTransport())  # type: ignore[arg-type]
    server.reader = None
    pool.add_server(server)
    pool.server_ready(server, time.monotonic())
    client = ClientConnection(pooler)
    client.transport = RecordingTransport()  # type: ignore[assignment]
    client.reader = None
    join_pool(pooler, client, pool)  # as welcome() does after a login
    assert client.statements is not None
    client.statements.used = tracked
    server.tracked = dict(client.params)
    return client, server
