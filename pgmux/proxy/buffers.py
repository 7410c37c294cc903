"""The receive buffer every connection reads into, and the login-phase message reader.

All reads land in one shared buffer: the event loop runs one callback at a time and each read
is forwarded before the callback returns, so no connection needs a buffer of its own. That
keeps an idle client down to a few hundred bytes, which is what lets 10,000 of them fit in
well under 150 MB.

One catch: a transport that cannot send everything at once may keep a *reference* to the bytes
it was given instead of a copy (uvloop does). :func:`release_if_retained` therefore swaps in a
fresh buffer whenever a write left data queued, handing the old one to the transport.
"""

from __future__ import annotations

import asyncio
import struct

from pgmux.protocol.framing import bad_length

BUFFER_SIZE = 128 * 1024


class SharedBuffer:
    __slots__ = ("data", "view")

    def __init__(self) -> None:
        self.data = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.data)

    def renew(self) -> None:
        self.data = bytearray(BUFFER_SIZE)
        self.view = memoryview(self.data)


SHARED = SharedBuffer()


def write_chunk(transport: asyncio.WriteTransport, view: memoryview) -> None:
    """Write a slice of the shared buffer; detach the buffer if the transport kept it."""
    transport.write(view)
    if transport.get_write_buffer_size():
        SHARED.renew()


class MessageReader:
    """Whole messages out of a byte stream, for the login phases (not the hot path).

    ``limit_name`` says in an error which limit a too long message broke.
    """

    def __init__(self, max_length: int, limit_name: str = "max_packet_size") -> None:
        self.buffer = bytearray()
        self.max_length = max_length
        self.limit_name = limit_name
        self._waiter: asyncio.Future[None] | None = None
        self.eof = False

    def feed(self, data: bytes | memoryview) -> None:
        self.buffer += data
        self._wake()

    def feed_eof(self) -> None:
        self.eof = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def _wait(self) -> None:
        if self.eof:
            raise ConnectionResetError("connection closed")
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    async def read_message(self) -> tuple[int, bytes]:
        """The next message as (type byte, body)."""
        while True:
            if len(self.buffer) >= 5:
                (length,) = struct.unpack_from("!i", self.buffer, 1)
                if length < 4 or length > self.max_length:
                    raise bad_length(length, self.max_length, self.limit_name)
                if len(self.buffer) >= length + 1:
                    kind = self.buffer[0]
                    body = bytes(self.buffer[5 : length + 1])
                    del self.buffer[: length + 1]
                    return kind, body
            await self._wait()

    async def read_raw(self, parse: object) -> object:
        """Bytes of the next startup packet, decoded by ``parse`` (see protocol.startup)."""
        while True:
            result = parse(self.buffer)  # type: ignore[operator]
            if result is not None:
                packet, length = result
                del self.buffer[:length]
                return packet
            await self._wait()

    def take_rest(self) -> bytes:
        rest = bytes(self.buffer)
        self.buffer.clear()
        return rest
