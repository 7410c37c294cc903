"""Message framing for the forwarding phase: walk 5-byte headers, never copy forwarded bodies.

After login, bytes are relayed between a client and a server as they arrive. pgmux still has to
know where each message starts, because a few of them drive pooling: the client's Query, Sync and
FunctionCall open a request that the server's ReadyForQuery closes; its Terminate ends the
session; the server's ReadyForQuery carries the transaction status and its ParameterStatus the
new value of a reported setting. The scanners here walk the stream header by header, across
arbitrary chunk boundaries, and report only those facts. Bodies of all other messages are
skipped by length, so a 10 MB DataRow costs as much as a 10-byte one.

Both scanners are plain state machines over byte buffers (no I/O, no clocks), which is what makes
them testable with any chunking hypothesis can think of.
"""

from __future__ import annotations

import struct

from pgmux.protocol.errors import PROTOCOL_VIOLATION, PgmuxError

_LENGTH = struct.Struct("!i").unpack_from

_Q, _S, _F, _X = ord("Q"), ord("S"), ord("F"), ord("X")
_COPY_DATA, _COPY_DONE, _COPY_FAIL, _FLUSH = ord("d"), ord("c"), ord("f"), ord("H")
_E = ord("E")
_Z, _PARAM, _COPY_IN = ord("Z"), ord("S"), ord("G")

# Message types that a client may legitimately send in the forwarding phase.
FRONTEND_TYPES = frozenset(b"BCcdDEfFHPpQSX")


def bad_length(length: int, limit: int, limit_name: str = "max_packet_size") -> PgmuxError:
    if length < 4:
        text = f"invalid message length {length}: the client is not speaking the protocol"
    else:
        text = f"message of {length} bytes exceeds {limit_name} ({limit} bytes)"
    return PgmuxError(PROTOCOL_VIOLATION, text)


def bad_type(kind: int) -> PgmuxError:
    return PgmuxError(
        PROTOCOL_VIOLATION,
        f"invalid frontend message type {kind} ({chr(kind)!r}): the client is not speaking the "
        "PostgreSQL protocol",
    )


class FrontendScanner:
    """Walks a client's stream, counting the requests that each earn a ReadyForQuery.

    ``pending`` is how many Query/Sync/FunctionCall messages have been sent that the server has
    not answered with ReadyForQuery yet (the connection's owner decrements it); ``partial`` is
    true while an extended-protocol batch has been started but not closed by Sync. A server
    connection can only be given back to the pool when both say the client is between requests.

    One exception to "every Sync earns a ReadyForQuery": the server ignores a Sync that reaches it
    in copy-in mode (libpq sends one right behind the Execute of a COPY FROM STDIN, and another
    after CopyDone). The scanner cannot see that mode start; the server's CopyInResponse says so,
    and :meth:`copy_in_started` then takes back the Syncs the server is certain to ignore: those
    sent right behind that Execute, with nothing but Sync and Flush since. Anything it is not
    sure of stays counted: a count too high only keeps the server with its client, a count too
    low would hand it to another client while replies are still coming.

    The scanner keeps no bytes. It stops at a header split across reads, and at a message whose
    type is in ``intercept`` (so that the caller can handle the whole message itself); the caller
    keeps the unscanned tail and feeds it again, prefixed to the next read.
    """

    __slots__ = (
        "copy_syncs",
        "executes",
        "in_copy",
        "intercept",
        "lone_execute",
        "max_length",
        "partial",
        "pending",
        "skip",
        "stop_length",
    )

    def __init__(self, intercept: frozenset[int] = frozenset((_X,)), max_length: int = 1 << 30):
        self.intercept = intercept
        self.max_length = max_length
        self.pending = 0
        self.partial = False
        self.skip = 0  # bytes of the current message body still to pass over
        self.stop_length = 0  # total length of the intercepted message feed() stopped at
        # For copy_in_started: Syncs sent since the last Execute with nothing else in between
        # (-1 once anything else was sent), Executes since the last Sync, and whether that last
        # Execute was alone in its batch.
        self.copy_syncs = -1
        self.executes = 0
        self.lone_execute = False
        # The server is in copy-in mode and the client has sent nothing but Sync and Flush since
        # the COPY's Execute: a Sync now is one the server ignores.
        self.in_copy = False

    @property
    def idle(self) -> bool:
        """True when the client has no request in flight and none half-sent."""
        return self.pending == 0 and not self.partial and self.skip == 0

    def feed(self, data: bytes | bytearray | memoryview, pos: int, end: int) -> int:
        """Scan ``data[pos:end]``; return where forwarding must stop.

        The return value equals ``end`` when everything may be forwarded. Otherwise
        ``data[result:end]`` is not scanned yet: if ``stop_length`` is 0 it is a header split
        across reads; else it starts with an intercepted message of ``stop_length`` bytes
        (possibly more than are here yet). Call :meth:`account` for an intercepted message the
        caller has handled, then feed the rest.
        """
        skip = self.skip
        if skip:
            if end - pos <= skip:
                self.skip = skip - (end - pos)
                return end
            pos += skip
            self.skip = 0
        intercept = self.intercept
        max_length = self.max_length
        while end - pos >= 5:
            kind = data[pos]
            length = _LENGTH(data, pos + 1)[0]
            if length < 4 or length > max_length:
                raise bad_length(length, max_length)
            if kind in intercept:
                self.stop_length = length + 1
                return pos
            # The same bookkeeping as account(), the commonest cases inlined: this loop runs for
            # every message.
            if kind == _S and not self.in_copy:
                self.pending += 1
                self.partial = False
                self.executes = 0
                if self.copy_syncs >= 0:
                    self.copy_syncs += 1
            elif kind == _COPY_DATA:
                self.copy_syncs = -1
                self.in_copy = False
            elif kind != _FLUSH:
                if kind not in FRONTEND_TYPES:
                    raise bad_type(kind)
                self.account(kind)
            pos += length + 1
            if pos > end:
                self.skip = pos - end
                return end
        self.stop_length = 0
        return pos

    def account(self, kind: int) -> None:
        """Count a message of type ``kind`` that the caller handled or forwarded."""
        if kind == _FLUSH or kind == _X:
            return
        if kind == _S:
            if not self.in_copy:  # else the server ignores it: it is in copy-in mode
                self.pending += 1
                self.partial = False
                self.executes = 0
                if self.copy_syncs >= 0:
                    self.copy_syncs += 1
            return
        self.in_copy = False  # copy data, CopyDone, CopyFail or anything else: the window closes
        self.copy_syncs = -1
        if kind == _Q or kind == _F:
            self.pending += 1
            self.partial = False
            self.executes += 1  # in the middle of a batch, it makes a later Execute not alone
        elif kind == _E:
            self.partial = True
            self.lone_execute = self.executes == 0
            self.executes += 1
            self.copy_syncs = 0
        elif kind != _COPY_DATA and kind != _COPY_DONE and kind != _COPY_FAIL:
            self.partial = True

    def copy_in_started(self, answered: int = 0) -> int:
        """The server sent CopyInResponse: take back the Syncs it ignores; return how many.

        ``answered`` is how many ReadyForQuery messages that came before it are not yet
        subtracted from ``pending``. The response is taken to start a copy for the last Execute
        only when nothing else is outstanding: that Execute alone in its batch, and every request
        before it answered. Then the Syncs behind it, with nothing but Syncs and Flushes since,
        reached the server in copy-in mode; it ignores them and those still to come until the
        client sends copy data. The batch stays open until the Sync after CopyDone.
        """
        syncs = self.copy_syncs
        if syncs < 0 or not self.lone_execute or self.pending - answered != syncs:
            return 0  # not sure: keep counting them, which can only hold the server longer
        self.pending -= syncs
        self.partial = True
        self.in_copy = True
        self.copy_syncs = -1
        return syncs

    def reset(self) -> None:
        self.pending = 0
        self.partial = False
        self.in_copy = False
        self.copy_syncs = -1
        self.executes = 0


class BackendScanner:
    """Walks a server's stream and reports ReadyForQuery, ParameterStatus and CopyInResponse.

    After :meth:`feed`, ``ready_count`` says how many ReadyForQuery messages the chunk held and
    ``status`` is the transaction status byte of the last one; ``copy_in`` counts the
    CopyInResponse messages (see :meth:`FrontendScanner.copy_in_started`). ParameterStatus
    bodies (which can straddle reads) are appended to ``parameters`` as raw bodies for the
    caller to decode; the list stays empty in the common case, so the steady state allocates
    nothing.
    """

    __slots__ = (
        "_body",
        "_header",
        "collecting",
        "copy_in",
        "last_kind",
        "max_length",
        "parameters",
        "ready_count",
        "skip",
        "status",
    )

    def __init__(self, max_length: int = 1 << 30) -> None:
        self.max_length = max_length
        self.skip = 0
        self._header = b""
        self._body = bytearray()
        self.collecting = 0  # message type whose body is being collected across reads
        self.status = 0
        self.ready_count = 0
        self.copy_in = 0
        self.parameters: list[bytes] = []
        self.last_kind = 0  # type of the last message seen: did a server say goodbye (E)?

    def feed(self, data: bytes | bytearray | memoryview, pos: int, end: int) -> None:
        self.ready_count = 0
        self.copy_in = 0
        if self.skip:
            pos = self._continue_body(data, pos, end)
        if self._header and pos < end:
            pos = self._complete_header(data, pos, end)
        max_length = self.max_length
        while end - pos >= 5:
            kind = data[pos]
            self.last_kind = kind
            length = _LENGTH(data, pos + 1)[0]
            if length < 4 or length > max_length:
                raise bad_length(length, max_length)
            nxt = pos + length + 1
            if kind == _Z and nxt <= end:
                if length != 5:
                    raise bad_length(length, 5)
                self.status = data[pos + 5]
                self.ready_count += 1
            elif kind == _Z or kind == _PARAM:
                if nxt > end:
                    self.collecting = kind
                    self._body = bytearray(data[pos + 5 : end])
                    self.skip = nxt - end
                    return
                self.parameters.append(bytes(data[pos + 5 : nxt]))
            else:
                if kind == _COPY_IN:
                    self.copy_in += 1
                if nxt > end:
                    self.skip = nxt - end
                    return
            pos = nxt
        if pos < end:
            self._header = bytes(data[pos:end])

    def _continue_body(self, data: bytes | bytearray | memoryview, pos: int, end: int) -> int:
        take = min(self.skip, end - pos)
        if self.collecting:
            self._body += data[pos : pos + take]
        self.skip -= take
        pos += take
        if self.skip == 0 and self.collecting:
            self._finish_collected(bytes(self._body))
        return pos

    def _finish_collected(self, body: bytes) -> None:
        if self.collecting == _Z:
            if len(body) != 1:
                raise bad_length(len(body) + 4, 5)
            self.status = body[0]
            self.ready_count += 1
        else:
            self.parameters.append(body)
        self.collecting = 0
        self._body = bytearray()

    def _complete_header(self, data: bytes | bytearray | memoryview, pos: int, end: int) -> int:
        take = min(5 - len(self._header), end - pos)  # never past ``end``: stale bytes there
        head = self._header + bytes(data[pos : pos + take])
        pos += take
        if len(head) < 5:
            self._header = head
            return pos
        self._header = b""
        kind = head[0]
        self.last_kind = kind
        if kind == _COPY_IN:
            self.copy_in += 1
        length = _LENGTH(head, 1)[0]
        if length < 4 or length > self.max_length:
            raise bad_length(length, self.max_length)
        self.skip = length - 4
        if kind == _Z or kind == _PARAM:
            self.collecting = kind
            self._body = bytearray()
            if self.skip == 0:
                self._finish_collected(b"")
                return pos
        if self.skip:
            pos = self._continue_body(data, pos, end)
        return pos

    @property
    def at_boundary(self) -> bool:
        """True when the last byte fed ended a message."""
        return self.skip == 0 and not self._header
