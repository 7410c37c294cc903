"""A connection from pgmux to PostgreSQL: login, then relaying to whichever client holds it.

Three phases, each entered explicitly: *login* (startup and authentication, driven by
:mod:`pgmux.proxy.server_login` through a :class:`MessageReader`), *internal* (a query pgmux runs
for itself: a health check, the reset query, or SETs that bring the session parameters in line
with the next client; its replies are consumed, not forwarded) and *relay* (every byte goes to
the linked client; only headers are looked at).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import struct
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pgmux.pool.pool import Members, Pool
from pgmux.protocol import messages as m
from pgmux.protocol.errors import ServerError
from pgmux.protocol.framing import BackendScanner
from pgmux.protocol.prepared import ServerStatements
from pgmux.proxy.buffers import SHARED, MessageReader, write_chunk
from pgmux.proxy.statements import relay_tracked

if TYPE_CHECKING:
    from pgmux.proxy.client import ClientConnection
    from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux.server")

_ids = itertools.count(1)
_LENGTH = struct.Struct("!i").unpack_from


class InternalQuery:
    """Bookkeeping for a query pgmux sends on its own behalf."""

    __slots__ = ("buffer", "client", "error", "on_done", "set_names")

    def __init__(
        self,
        on_done: Callable[[ServerError | None], None] | None,
        client: Any,
        set_names: tuple[str, ...] = (),
    ) -> None:
        self.on_done = on_done
        self.client = client  # whose parameters a SET brings in line, if any
        self.set_names = set_names  # the parameters a set_config() row reports, in order
        self.buffer = bytearray()
        self.error: ServerError | None = None


class ServerConnection(asyncio.BufferedProtocol):
    def __init__(self, pooler: Pooler, pool: Pool) -> None:
        self.pooler = pooler
        self.pool = pool
        self.id = next(_ids)
        self.members: Members = {}
        self.transport: asyncio.Transport | None = None
        self.reader: MessageReader | None = MessageReader(pooler.max_packet_size)
        self.client: ClientConnection | None = None
        self.scanner = BackendScanner()
        self.internal: InternalQuery | None = None
        self.tracked: dict[str, str] = {}  # reported values of the tracked parameters
        self.statements = ServerStatements(pooler.max_prepared_statements)
        self.reply_buffer = bytearray()  # a partial reply, on tracked links only
        self.backend_pid = 0
        self.backend_key = 0
        self.generation = pool.generation
        self.close_needed = False
        self.closed = False
        self.connect_time = time.monotonic()
        self.idle_since = self.connect_time
        self.request_start = 0.0
        self.link_time = 0.0
        self.tx_status = m.TX_IDLE
        self.reading_paused = False
        self.writing_paused = False
        self.lost: asyncio.Future[None] = pooler.loop.create_future()
        self.addr: tuple[str, int] = ("", 0)
        self.local_addr: tuple[str, int] = ("", 0)

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.addr = peer if isinstance(peer, tuple) else (str(peer or "unix"), 0)
        self.local_addr = sock if isinstance(sock, tuple) else (str(sock or "unix"), 0)

    def get_buffer(self, sizehint: int) -> memoryview:
        return SHARED.view

    def buffer_updated(self, nbytes: int) -> None:
        view = SHARED.view
        client = self.client
        if client is None or self.reader is not None or self.internal is not None:
            self._not_relaying(view, nbytes)
            return
        if client.tracking:
            relay_tracked(self, client, view, nbytes)
            return
        if client.statement_mode:
            self._relay_statement_mode(client, view, nbytes)
            return
        # The hot path, inlined: forward, then look at the headers of what was forwarded.
        transport: Any = client.transport
        transport.write(view[:nbytes])
        if transport.get_write_buffer_size():
            SHARED.renew()  # the transport kept a reference to the shared buffer
        scanner = self.scanner
        scanner.feed(view, 0, nbytes)
        self.pool.stats.sent += nbytes
        if scanner.ready_count:
            if scanner.parameters:
                self._parameters_changed(scanner.parameters, client)
            self.tx_status = scanner.status
            client.server_ready(self, scanner.status, scanner.ready_count)
        elif scanner.parameters:
            self._parameters_changed(scanner.parameters, client)
        if scanner.copy_in:
            self._copy_in(client)

    def _relay_statement_mode(self, client: Any, view: memoryview, nbytes: int) -> None:
        """Statement mode looks before it forwards: a transaction block must not look opened."""
        scanner = self.scanner
        scanner.feed(view, 0, nbytes)
        if scanner.ready_count and scanner.status != m.TX_IDLE:
            self.tx_status = scanner.status
            client.refuse_transaction_block()
            return
        write_chunk(client.transport, view[:nbytes])
        self._after_forward(client, nbytes)

    def _not_relaying(self, view: memoryview, nbytes: int) -> None:
        if self.reader is not None:
            self.reader.feed(view[:nbytes])
        elif self.internal is not None:
            self._internal_data(view, nbytes)
        elif self.client is not None:
            self._relay(view, nbytes)
        else:
            self._idle_data(bytes(view[:nbytes]))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost does the bookkeeping

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.reader is not None:
            self.reader.feed_eof()
        if not self.lost.done():
            self.lost.set_result(None)
        self.pooler.server_lost(self, exc)

    def pause_writing(self) -> None:
        # PostgreSQL is not keeping up with what a client sends: stop reading from that client.
        self.writing_paused = True
        client = self.client
        if client is not None and client.transport is not None:
            client.pause_reading()

    def resume_writing(self) -> None:
        self.writing_paused = False
        client = self.client
        if client is not None:
            client.resume_reading()

    # -- relay ---------------------------------------------------------------------------

    def _relay(self, view: memoryview, nbytes: int) -> None:
        client = self.client
        assert client is not None and client.transport is not None
        write_chunk(client.transport, view[:nbytes])
        self.scanner.feed(view, 0, nbytes)
        self._after_forward(client, nbytes)

    def _after_forward(self, client: Any, nbytes: int) -> None:
        """Bookkeeping for a scanned and forwarded chunk: stats, parameters, ReadyForQuery."""
        scanner = self.scanner
        self.pool.stats.sent += nbytes
        if scanner.parameters:
            self._parameters_changed(scanner.parameters, client)
        if scanner.ready_count:
            self.tx_status = scanner.status
            client.server_ready(self, scanner.status, scanner.ready_count)
        if scanner.copy_in:
            self._copy_in(client)

    def _copy_in(self, client: Any) -> None:
        """A CopyInResponse in the chunk just relayed; its ReadyForQuery messages are counted.

        Any ReadyForQuery in a chunk with a CopyInResponse precedes it: after CopyInResponse the
        server answers nothing until the client's copy data. And a client with a copy starting
        was not released by them, its Sync or Execute being still unanswered.
        """
        if self.client is client and client is not None:
            client.copy_in_started()

    def parameter_reported(self, body: bytes, client: Any) -> None:
        self._parameters_changed([body], client)

    def _parameters_changed(self, bodies: list[bytes], client: Any) -> None:
        tracked = self.tracked
        for body in bodies:
            name, value = m.parse_parameter_status(body)
            if name in tracked:
                tracked[name] = value
                if client is not None:
                    client.params[name] = value
        bodies.clear()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- internal queries ----------------------------------------------------------------

    def run_internal(
        self,
        sql: str,
        on_done: Callable[[ServerError | None], None] | None = None,
        client: Any = None,
    ) -> None:
        """Send ``sql`` for pgmux itself; its replies up to ReadyForQuery are consumed.

        Bytes that follow that ReadyForQuery (replies to a client's query pipelined right
        after, see :meth:`sync_parameters`) are relayed as usual.
        """
        assert self.transport is not None
        self.internal = InternalQuery(on_done, client)
        self.transport.write(m.query(sql))

    def sync_parameters(
        self,
        client: Any,
        on_done: Callable[[ServerError | None], None] | None = None,
    ) -> bool:
        """Bring the session parameters in line with ``client`` before its query goes out.

        Parameters a previous client set at startup that this one did not are RESET, so no
        client ever runs with another's settings. Returns False when nothing needed doing.
        """
        tracked = self.tracked
        wanted = client.params
        changed = tuple(name for name, value in wanted.items() if tracked.get(name) != value)
        statements = []
        if changed:
            # set_config() takes a value the way a startup packet does (a list for
            # search_path, say) and returns PostgreSQL's spelling of it (UTF8 for utf8), which
            # ParameterStatus would not repeat for a value that did not change.
            calls = ", ".join(
                f"pg_catalog.set_config({quote_literal(name)}, {quote_literal(wanted[name])}, "
                "false)"
                for name in changed
            )
            statements.append(f"SELECT {calls}")
        stale = [name for name in tracked if name not in wanted]
        for name in stale:
            statements.append(f"RESET {quote_ident(name)}")
            del tracked[name]
        for name in changed:
            tracked[name] = wanted[name]  # corrected by the set_config() row
        if not statements:
            return False
        assert self.transport is not None
        self.internal = InternalQuery(on_done, client, changed)
        self.transport.write(m.query(";".join(statements)))
        return True

    def start_check(self) -> None:
        """server_check_query before reuse: the pool hands the server on when it answers."""
        self.run_internal(self.pool.settings.server_check_query, self._check_done)

    def _check_done(self, error: ServerError | None) -> None:
        if error is not None:
            self.close("server_check_query failed")
            return
        self.pool.server_ready(self, time.monotonic())

    def _internal_data(self, view: memoryview, nbytes: int) -> None:
        internal = self.internal
        assert internal is not None
        buf = internal.buffer
        buf += view[:nbytes]
        pos = 0
        while len(buf) - pos >= 5:
            kind = buf[pos]
            length = _LENGTH(buf, pos + 1)[0]
            if len(buf) - pos < length + 1:
                break
            body = bytes(buf[pos + 5 : pos + 1 + length])
            pos += length + 1
            if kind == 0x53:  # ParameterStatus
                self._parameters_changed([body], internal.client)
            elif kind == 0x44 and internal.set_names:  # DataRow of set_config()
                self._parameters_set(internal, m.parse_data_row(body))
            elif kind == 0x45:  # ErrorResponse
                internal.error = ServerError(m.parse_error_fields(body))
            elif kind == 0x5A:  # ReadyForQuery
                self.tx_status = body[0]
                self._finish_internal(internal, bytes(buf[pos:]))
                return
        del buf[:pos]

    def _finish_internal(self, internal: InternalQuery, rest: bytes) -> None:
        self.internal = None
        if internal.error is not None:
            log.warning("server %d: internal query failed: %s", self.id, internal.error)
            for name in internal.set_names:  # rolled back: unknown now, set again next time
                self.tracked.pop(name, None)
        if internal.on_done is not None:
            internal.on_done(internal.error)
        if rest:
            client = self.client
            if client is None:
                self._idle_data(rest)
            elif client.tracking:
                relay_tracked(self, client, memoryview(rest), len(rest))
            else:
                self._relay(memoryview(rest), len(rest))

    def _parameters_set(self, internal: InternalQuery, values: list[str | None]) -> None:
        """What set_config() returned is PostgreSQL's own spelling of each value."""
        client = internal.client
        for name, value in zip(internal.set_names, values, strict=False):
            if value is None:
                continue
            self.tracked[name] = value
            if client is not None:
                client.params[name] = value

    def _idle_data(self, data: bytes) -> None:
        # Between clients PostgreSQL may still speak: a ParameterStatus, a notice, a
        # notification for a LISTEN nobody holds any more, or a FATAL before it hangs up.
        pos = 0
        while len(data) - pos >= 5:
            kind = data[pos]
            length = _LENGTH(data, pos + 1)[0]
            body = data[pos + 5 : pos + 1 + length]
            pos += length + 1
            if kind == 0x45:
                log.info("server %d: %s", self.id, ServerError(m.parse_error_fields(body)))
                self.close("server error while idle")
                return
            if kind == 0x53 and len(body) >= 2:
                self._parameters_changed([body], None)

    # -- closing -------------------------------------------------------------------------

    def close(self, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        log.debug("server %d closing: %s", self.id, reason)
        transport = self.transport
        if transport is not None and not transport.is_closing():
            # The socket may already be gone; closing is what matters.
            with contextlib.suppress(Exception):
                transport.write(m.TERMINATE_MESSAGE)
            transport.close()


def quote_literal(value: str) -> str:
    # E'' reads the same whatever standard_conforming_strings a previous client left behind.
    return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def quote_ident(name: str) -> str:
    if name.replace("_", "").isalnum() and name.islower():
        return name
    return '"' + name.replace('"', '""') + '"'
