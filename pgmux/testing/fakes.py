"""A stand-in for the transports uvloop gives pgmux's connections.

For tests and benchmarks that drive ``ClientConnection``/``ServerConnection`` directly, with no
socket and no PostgreSQL: bytes go in through :func:`feed`, and what pgmux writes back is
counted, the last write kept.
"""

from __future__ import annotations

from typing import Any

from pgmux.proxy.buffers import SHARED


class RecordingTransport:
    """Counts writes and keeps the last one; never buffers, never blocks."""

    def __init__(self) -> None:
        self.writes = 0
        self.last = b""
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes += 1
        self.last = bytes(data)

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
