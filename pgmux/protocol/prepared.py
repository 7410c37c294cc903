"""Protocol-level named prepared statements across pooled server connections (sans-IO).

In transaction mode a client's named statement (Parse with a name) must work on whichever
server connection its next transaction lands on. pgmux therefore renames: every distinct
(query text, parameter types) gets one server-side name (``PGMUX_<n>``) shared by all clients,
each client keeps its own name -> server-name map, and each server connection keeps an LRU of
the names it has prepared (``max_prepared_statements``).

Renaming changes which messages reach the server, so the replies the client expects no longer
line up with what the server sends. A :class:`ResponseQueue` records, in order, one entry per
request sent on the client's behalf and says for each reply whether to forward it, swallow it
(the reply to a Parse or Close pgmux injected) or answer it with a reply pgmux makes itself (a
ParseComplete for a statement the server already had). When the server reports an error inside
an extended-protocol batch it skips to the next Sync, and so does the queue.
"""

from __future__ import annotations

import struct
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from pgmux.protocol.messages import message

_I16 = struct.Struct("!h")

PARSE_COMPLETE = message(b"1")
CLOSE_COMPLETE = message(b"3")

# Actions for the reply (or replies) to one request.
FORWARD = 0
SWALLOW = 1  # the request was pgmux's own: the client must not see its reply
ANSWER = 2  # pgmux answers the client itself; nothing was sent to the server

# Request types whose replies end with the message types listed.
_ENDS: dict[int, bytes] = {
    ord("P"): b"1",
    ord("B"): b"2",
    ord("C"): b"3",
    ord("D"): b"Tn",
    ord("E"): b"CIs",
    ord("S"): b"Z",
    ord("Q"): b"Z",
    ord("F"): b"Z",
}
# Replies that can come at any time and belong to no request.
ASYNC_REPLIES = frozenset(b"NAS")
_ERROR = ord("E")
_SYNC = ord("S")


@dataclass
class Entry:
    kind: int  # request type (ord of the frontend message letter)
    action: int = FORWARD
    reply: bytes = b""  # for ANSWER
    statement: bytes = b""  # for a Parse: the server name it prepares
    client_name: bytes = b""  # for the client's own Parse: the name the client gave it
    evicted: bytes = b""  # for an eviction Close: the server name it closes
    # An error answering this request names the server's statement: show the client's name.
    rename: tuple[bytes, bytes] | None = None


class ResponseQueue:
    """Outstanding requests of one client on its server, oldest first.

    Requests the server never carries out (skipped after an error, up to the next Sync) end up
    in ``dropped``, for the caller to undo what it recorded when it sent them.
    """

    __slots__ = ("dropped", "entries", "skipping")

    def __init__(self) -> None:
        self.entries: deque[Entry] = deque()
        self.dropped: list[Entry] = []
        # An error was reported and the client has not sent the Sync that ends the skipping.
        self.skipping = False

    def __bool__(self) -> bool:
        return bool(self.entries)

    def expect(self, entry: Entry) -> None:
        if self.skipping:
            if entry.kind != _SYNC:
                self.dropped.append(entry)  # the server will skip it: no reply will come
                return
            self.skipping = False
        self.entries.append(entry)

    def forget_syncs(self, count: int) -> None:
        """Drop the first ``count`` Syncs: the server ignored them (they reached it in copy-in
        mode, right behind the COPY that heads the queue), so no ReadyForQuery answers them."""
        kept: deque[Entry] = deque()
        for entry in self.entries:
            if count and entry.kind == _SYNC:
                count -= 1
            else:
                kept.append(entry)
        self.entries = kept

    def answers_due(self) -> bytes:
        """Replies pgmux owes the client now that everything before them has been answered."""
        out = b""
        entries = self.entries
        while entries and entries[0].action == ANSWER:
            out += entries.popleft().reply
        return out

    def on_reply(self, kind: int) -> bool:
        """Account for one server reply of type ``kind``; True if the client should get it.

        An error ends the request it answers and, as the server skips to Sync, every request
        up to it (and those the client sends before that Sync).
        """
        entries = self.entries
        if kind in ASYNC_REPLIES or not entries:
            return True
        head = entries[0]
        if kind == _ERROR:
            self._skip_to_sync(head)
            return True
        forward = head.action == FORWARD
        if kind in _ENDS.get(head.kind, b""):
            entries.popleft()
        return forward

    def _skip_to_sync(self, head: Entry) -> None:
        entries = self.entries
        if head.kind in (ord("Q"), ord("F"), _SYNC):
            return  # a simple query's error is followed by its own ReadyForQuery
        while entries and entries[0].kind != _SYNC:
            self.dropped.append(entries.popleft())
        if not entries:
            self.skipping = True


class ServerStatements:
    """Names prepared on one server connection, least recently used first."""

    __slots__ = ("capacity", "names")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.names: OrderedDict[bytes, None] = OrderedDict()

    def __contains__(self, name: bytes) -> bool:
        return name in self.names

    def touch(self, name: bytes) -> None:
        self.names.move_to_end(name)

    def add(self, name: bytes, *, evict: bool = True) -> list[bytes]:
        """Record ``name``; return the names to Close on the server to stay within capacity.

        ``evict=False`` is for links where a Close's reply could not be swallowed: the set
        may then exceed its capacity until a tracked link brings it back within it.
        """
        self.names[name] = None
        evicted: list[bytes] = []
        while evict and self.capacity > 0 and len(self.names) > self.capacity:
            evicted.append(self.names.popitem(last=False)[0])
        return evicted

    def discard(self, name: bytes) -> None:
        self.names.pop(name, None)

    def clear(self) -> None:
        self.names.clear()


@dataclass
class Registry:
    """Query text + parameter types -> the one server-side name all clients share."""

    limit: int = 100_000
    names: dict[bytes, bytes] = field(default_factory=dict)
    counter: int = 0

    def invalidate(self) -> None:
        """New names from now on: a server said a shared statement's plan is stale."""
        self.names.clear()

    def name_for(self, definition: bytes) -> bytes:
        name = self.names.get(definition)
        if name is None:
            self.counter += 1
            name = b"PGMUX_%d" % self.counter
            if len(self.names) < self.limit:  # beyond it, statements are simply not shared
                self.names[definition] = name
        return name


# --- message surgery --------------------------------------------------------------------------


def _cstring_end(data: bytes, start: int) -> int:
    end = data.find(b"\x00", start)
    if end < 0:
        raise ValueError("string field is not NUL-terminated")
    return end


def split_parse(msg: bytes | memoryview) -> tuple[bytes, bytes]:
    """(statement name, the rest of the body: query, parameter types) of a Parse message."""
    data = bytes(msg)  # one copy, then searched in place
    end = _cstring_end(data, 5)
    return data[5:end], data[end + 1 :]


def build_parse(name: bytes, definition: bytes) -> bytes:
    return message(b"P", name + b"\x00" + definition)


def split_bind(msg: bytes | memoryview) -> tuple[bytes, bytes, bytes]:
    """(portal, statement name, the rest of the body) of a Bind message."""
    data = bytes(msg)  # one copy, then searched in place
    portal_end = _cstring_end(data, 5)
    name_end = _cstring_end(data, portal_end + 1)
    return data[5:portal_end], data[portal_end + 1 : name_end], data[name_end + 1 :]


def build_bind(portal: bytes, name: bytes, rest: bytes) -> bytes:
    return message(b"B", portal + b"\x00" + name + b"\x00" + rest)


def split_target(msg: bytes | memoryview) -> tuple[int, bytes]:
    """('S' or 'P', name) of a Describe or Close message."""
    data = bytes(msg)
    if len(data) < 7:
        raise ValueError("Describe/Close message too short")
    end = _cstring_end(data, 6)
    return data[5], data[6:end]


def rename_in_error(msg: bytes, server_name: bytes, client_name: bytes) -> bytes:
    """An ErrorResponse with ``"server_name"`` shown as ``"client_name"``."""
    body = msg[5:].replace(b'"' + server_name + b'"', b'"' + client_name + b'"')
    return message(b"E", body)


def build_target(kind: bytes, target: int, name: bytes) -> bytes:
    return message(kind, bytes((target,)) + name + b"\x00")
