"""A client's connection to pgmux: login, then forwarding to a server connection from its pool.

The login phase (startup packet, authentication, welcome) runs as a coroutine in
:mod:`pgmux.proxy.client_login` and reads through a :class:`MessageReader`. The forwarding phase
is plain callbacks: bytes from the client go to its linked server as they arrive; a client with
no server asks the pool for one (queueing its bytes while it waits). When the server's
ReadyForQuery says the transaction is over, :meth:`ClientConnection.server_ready` decides
whether to give the server back, which is the pool-mode logic in one place.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from typing import TYPE_CHECKING, Any

from pgmux.pool.pool import Members, Pool
from pgmux.pool.stats import PoolStats
from pgmux.protocol import messages as m
from pgmux.protocol.errors import (
    ACTIVE_SQL_TRANSACTION,
    CONNECTION_FAILURE,
    PROTOCOL_VIOLATION,
    PgmuxError,
)
from pgmux.protocol.framing import FRONTEND_TYPES, FrontendScanner
from pgmux.proxy.buffers import BUFFER_SIZE, SHARED, MessageReader
from pgmux.proxy.inspector import maybe_effect
from pgmux.proxy.statements import (
    BASE_INTERCEPT,
    STATEMENT_INTERCEPT,
    TRACKED_INTERCEPT,
    ClientStatements,
    intercept,
)

if TYPE_CHECKING:
    from pgmux.proxy.pooler import Pooler
    from pgmux.proxy.server import ServerConnection

log = logging.getLogger("pgmux.client")

_ids = itertools.count(1)
_TERMINATE = ord("X")
_QUERY = ord("Q")
_IDLE = m.TX_IDLE
_monotonic = time.monotonic
# Bytes a waiting client may queue before pgmux stops reading from it (back-pressure).
PENDING_LIMIT = 256 * 1024
# The longest password or SASL message a client may send, as PostgreSQL's
# PG_MAX_AUTH_TOKEN_LENGTH: nobody who has not logged in gets max_packet_size of pgmux's memory.
MAX_AUTH_MESSAGE = 65535


class ClientConnection(asyncio.BufferedProtocol):
    def __init__(self, pooler: Pooler, is_unix: bool = False) -> None:
        self.pooler = pooler
        self.id = next(_ids)
        self.is_unix = is_unix
        self.members: Members = {}
        self.transport: asyncio.Transport | None = None
        self.reader: MessageReader | None = MessageReader(
            min(pooler.max_packet_size, MAX_AUTH_MESSAGE), "the limit for a login message"
        )
        self.pool: Pool | None = None
        self.server: ServerConnection | None = None
        self.scanner = FrontendScanner(BASE_INTERCEPT, pooler.max_packet_size)
        self.carry = b""  # unscanned tail of the last read, fed again before the next one
        self.carry_view = SHARED.view
        self.pending = bytearray()  # bytes waiting for a server
        self.params: dict[str, str] = {}  # tracked session parameters as this client set them
        self.startup: dict[str, str] = {}
        self.user = ""
        self.database = ""
        self.application_name = ""
        self.pool_mode = "session"
        self.releases = False  # whether ReadyForQuery may give the server back (not session)
        self.statement_mode = False
        self.statements: ClientStatements | None = None  # transaction/statement mode only
        self.tracking = False  # this link's replies go through the ResponseQueue
        self.pinned: dict[str, None] = {}  # why this client keeps its server (transaction mode)
        # It released the state it was pinned for: its server is reset before it serves anyone
        # else, in case the release did not take (rolled back, failed, or never executed).
        self.reset_due = False
        self.hold_cursors: set[bytes] = set()  # open WITH HOLD cursors, by name
        self.session_state = "pin"
        self.stats = PoolStats()  # the pool's counters once logged in
        self.cancel_key = (0, 0)
        self.connect_time = time.monotonic()
        self.request_time = self.connect_time
        self.wait_start = 0.0
        self.reading_paused = False
        self.closing = False
        self.is_admin = False
        self.admin: Any = None
        self.login_task: asyncio.Task[None] | None = None
        self.assigned: asyncio.Future[None] | None = None
        self.addr: tuple[str, int] = ("", 0)
        self.local_addr: tuple[str, int] = ("", 0)

    # -- asyncio callbacks ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's are not subclasses
        peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("sockname")
        self.addr = peer if isinstance(peer, tuple) else ("unix", 0)
        self.local_addr = sock if isinstance(sock, tuple) else ("unix", 0)
        self.pooler.client_connected(self)

    def get_buffer(self, sizehint: int) -> memoryview:
        carry = self.carry
        if not carry:
            return SHARED.view
        # The unscanned tail goes first so that the scanner sees one contiguous stream.
        size = len(carry)
        view = (
            SHARED.view if size <= BUFFER_SIZE // 2 else memoryview(bytearray(size + BUFFER_SIZE))
        )
        view[:size] = carry
        self.carry_view = view
        return view[size:]

    def buffer_updated(self, nbytes: int) -> None:
        reader = self.reader
        if reader is not None:
            reader.feed(SHARED.view[:nbytes])
            if len(reader.buffer) > PENDING_LIMIT:
                # Still logging in (or waiting for a server in session mode) and sending more
                # than a first query: let it wait in the socket, not in pgmux's memory.
                self.pause_reading()
            return
        try:
            carry = self.carry
            if carry:
                self.carry = b""
                self.on_data(self.carry_view, len(carry) + nbytes)
                return
            # The hot path, inlined: a linked client forwards; an unlinked one asks its pool.
            view = SHARED.view
            self.request_time = _monotonic()
            server = self.server
            if server is None:
                server = self._server_for(view, nbytes)
                if server is None:
                    return
            self._forward(view, 0, nbytes)
        except PgmuxError as error:
            self.fail(error)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.reader is not None:
            self.reader.feed_eof()
        self.pooler.client_lost(self)

    def pause_writing(self) -> None:
        # The client reads slower than its server answers: stop reading from that server.
        server = self.server
        if server is not None:
            server.pause_reading()

    def resume_writing(self) -> None:
        server = self.server
        if server is not None:
            server.resume_reading()

    def pause_reading(self) -> None:
        if not self.reading_paused and self.transport is not None:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.reading_paused and self.transport is not None:
            self.reading_paused = False
            self.transport.resume_reading()

    # -- forwarding ----------------------------------------------------------------------

    def on_data(self, view: memoryview, end: int) -> None:
        self.request_time = _monotonic()
        if self.server is not None or self._server_for(view, end) is not None:
            self._forward(view, 0, end)

    def _server_for(self, view: memoryview, end: int) -> ServerConnection | None:
        """The server to forward to: linked now from the pool, or None (queued or done)."""
        if self.pending:
            self._queue(view, end)
            return None
        if end < 5:
            # Not even a whole header yet: a client that stalls here must not hold a server.
            self.carry = bytes(view[:end])
            return None
        kind = view[0]
        if kind == _TERMINATE:
            self.close_quietly()
            return None
        if self.is_admin:
            self.pooler.admin_data(self, bytes(view[:end]))
            return None
        if kind not in FRONTEND_TYPES:
            self.fail(PgmuxError(PROTOCOL_VIOLATION, f"invalid message type {chr(kind)!r}"))
            return None
        pool = self.pool
        assert pool is not None
        server: ServerConnection | None = pool.acquire(self, self.request_time)
        if server is None:
            self._queue(view, end)
            return None
        self.link(server)
        return server

    def _queue(self, view: memoryview, end: int) -> None:
        self.pending += view[:end]
        if len(self.pending) > PENDING_LIMIT:
            self.pause_reading()

    def assign(self, server: ServerConnection) -> None:
        """The pool hands this waiting client a server: link and send what was queued."""
        self.link(server)
        if self.reader is not None:  # still logging in (session mode links at login)
            if self.assigned is not None and not self.assigned.done():
                self.assigned.set_result(None)
            return
        pending = self.pending
        if pending:
            self.pending = bytearray()
            self._forward(memoryview(pending), 0, len(pending))
        self.resume_reading()

    def link(self, server: ServerConnection) -> None:
        self.server = server
        server.client = self
        statements = self.statements
        if statements is not None and statements.used:
            # A client with named statements has every reply of a link matched to its request.
            self.tracking = True
            self.scanner.intercept = TRACKED_INTERCEPT
        server.link_time = self.request_time
        self.stats.server_assignment_count += 1
        # During login the parameters are applied (and awaited) by the login itself.
        if server.tracked != self.params and self.reader is None:
            server.sync_parameters(self)
        if server.writing_paused:
            self.pause_reading()

    def _forward(self, view: memoryview, pos: int, end: int) -> None:
        server = self.server
        assert server is not None and server.transport is not None
        scanner = self.scanner
        self.stats.received += end - pos
        stop = scanner.feed(view, pos, end)
        if stop == end or (stop == pos and self._plain_query(view, pos, end)):
            # The hot path: nothing intercepted (or one plain Query), one write.
            transport = server.transport
            transport.write(view[pos:end])
            if transport.get_write_buffer_size():
                SHARED.renew()  # the transport kept a reference to the shared buffer
            return
        out: list[bytes | memoryview] = []
        while True:
            if stop > pos:
                out.append(view[pos:stop])
            if stop == end:
                break
            length = scanner.stop_length
            if length == 0 or stop + length > end:
                self.carry = bytes(view[stop:end])
                break
            kind = view[stop]
            if kind == _TERMINATE:
                self._write_to(server, out)
                self.close_quietly()
                return
            try:
                consumed = intercept(self, server, view[stop : stop + length], kind, out)
            except ValueError as exc:  # a Parse/Bind/Describe/Close whose fields do not add up
                raise PgmuxError(
                    PROTOCOL_VIOLATION, f"malformed {chr(kind)!r} message: {exc}"
                ) from None
            if not consumed:
                scanner.account(kind)
            pos = stop + length
            stop = scanner.feed(view, pos, end)
        self._write_to(server, out)

    def _plain_query(self, view: memoryview, pos: int, end: int) -> bool:
        """True (and counted) if the chunk is exactly one simple Query that can go out as it is.

        That is the commonest chunk of all. It skips the general loop when the byte test of
        :func:`maybe_effect` clears its text and no reply needs tracking; otherwise the loop
        and :func:`~pgmux.proxy.statements.intercept` handle it as any other.
        """
        scanner = self.scanner
        if (
            self.tracking
            or scanner.stop_length != end - pos
            or view[pos] != _QUERY
            or maybe_effect(bytes(view[pos + 5 : end - 1]))
        ):
            return False
        scanner.account(_QUERY)
        return True

    @staticmethod
    def _write_to(server: ServerConnection, out: list[bytes | memoryview]) -> None:
        transport = server.transport
        if not out or transport is None:
            return
        transport.write(out[0] if len(out) == 1 else b"".join(out))
        if transport.get_write_buffer_size():
            SHARED.renew()  # the transport kept a reference to the shared buffer

    def inspect(self, msg: memoryview, kind: int) -> bool:
        """Look at a Query or Parse for effects on session state or on databases.

        True when pgmux answered the message itself and it must not be forwarded.
        """
        return self.pooler.inspector.inspect(self, msg, kind)

    def pin(self, reasons: tuple[str, ...]) -> None:
        """Keep this server connection: the client left session state on it."""
        new = [r for r in reasons if r not in self.pinned]
        if not new:
            return
        if not self.pinned:
            log.info(
                "client %d (%s@%s) pinned to its server connection: %s",
                self.id,
                self.user,
                self.database,
                ", ".join(new),
            )
        self.pinned.update(dict.fromkeys(new))
        self.releases = False

    def unpin(self, released: set[str]) -> None:
        pinned = self.pinned
        if not pinned:
            return
        for reason in released:
            pinned.pop(reason, None)
        if not pinned and self.pool_mode != "session":
            self.releases = True
            # pgmux sees the statement that releases the state, not whether it took effect.
            self.reset_due = True

    def server_ready(self, server: ServerConnection, status: int, count: int) -> None:
        """ReadyForQuery from our server: the one place that decides on giving it back."""
        scanner = self.scanner
        pending = scanner.pending - count
        scanner.pending = pending if pending > 0 else 0
        stats = self.stats
        stats.query_count += count
        now = _monotonic()
        stats.query_time_us += int((now - self.request_time) * 1_000_000)
        if status == _IDLE:
            stats.xact_count += 1
            stats.xact_time_us += int((now - server.link_time) * 1_000_000)
            if (
                self.releases
                and pending <= 0
                and not scanner.partial
                and not scanner.skip
                and not self.carry
                and not (self.tracking and self.statements and self.statements.queue)
            ):
                self._unlink(server, now)
                if self.reset_due:
                    self.reset_due = False
                    self.pooler.reset_server(self.pool, server)  # type: ignore[arg-type]
                else:
                    self.pool.server_ready(server, now)  # type: ignore[union-attr]

    def copy_in_started(self, answered: int = 0) -> None:
        """The server entered copy-in mode: Syncs it ignores get no ReadyForQuery.

        ``answered``: ReadyForQuery messages before it not yet passed to :meth:`server_ready`.
        """
        ignored = self.scanner.copy_in_started(answered)
        if ignored and self.tracking:
            self.statements.queue.forget_syncs(ignored)  # type: ignore[union-attr]

    def refuse_transaction_block(self) -> None:
        """Statement mode: the server just opened a transaction block for this client."""
        self.fail(
            PgmuxError(
                ACTIVE_SQL_TRANSACTION,
                "transaction blocks are not allowed in statement pooling mode; "
                "use autocommit or a pool in transaction mode",
            )
        )

    def _unlink(self, server: ServerConnection, now: float) -> None:
        server.client = None
        self.server = None
        if self.statements is not None:
            self.tracking = False
            self.scanner.intercept = STATEMENT_INTERCEPT
        server.idle_since = now
        if server.reading_paused:
            server.resume_reading()
        if self.reading_paused:
            self.resume_reading()

    # -- errors and closing --------------------------------------------------------------

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def fail(self, error: PgmuxError) -> None:
        """Send ``error`` and close: the affected client learns why, nobody else notices."""
        if error.severity == "ERROR":
            error.severity = "FATAL"
        log_level = logging.INFO if error.sqlstate.startswith("28") else logging.WARNING
        if self.pooler.log_pooler_errors:
            log.log(log_level, "client %d (%s@%s): %s", self.id, self.user, self.database, error)
        self.send(m.error_response(error))
        self.close(str(error.message))

    def server_died(self, detail: str) -> None:
        self.fail(
            PgmuxError(
                CONNECTION_FAILURE,
                "server connection closed unexpectedly: the query was not completed and "
                "will not be retried; reconnect and try again",
                detail=detail,
            )
        )

    def close_quietly(self) -> None:
        self.close("client closed the connection")

    def close(self, reason: str) -> None:
        if self.closing:
            return
        self.closing = True
        self.pooler.client_closing(self, reason)
        if self.transport is not None:
            self.transport.close()
