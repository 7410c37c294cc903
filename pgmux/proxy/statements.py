"""Intercepted client messages: named prepared statements and statements with side effects.

The client's scanner stops at the message types in its ``intercept`` set and hands each whole
message to :func:`intercept`, which appends what should reach the server to ``out`` (the same
message, a renamed one, one preceded by an injected Parse, or nothing) and, while the link is
*tracked*, records in the client's :class:`ResponseQueue` what to do with the replies.

A link is tracked from its first message once the client has used a named statement; its
server replies then go through :func:`relay_tracked` instead of the plain relay. The first time
a client names a statement, earlier requests of that link may still be unanswered (and were not
recorded); such a statement gets a server name private to the client and a real Parse, so
that no reply has to be made up or swallowed until the next, tracked, link.
"""

from __future__ import annotations

import re
import struct
from typing import TYPE_CHECKING

from pgmux.protocol import messages as m
from pgmux.protocol.errors import PROGRAM_LIMIT_EXCEEDED, PgmuxError
from pgmux.protocol.framing import bad_length
from pgmux.protocol.prepared import (
    ANSWER,
    CLOSE_COMPLETE,
    PARSE_COMPLETE,
    SWALLOW,
    Entry,
    ResponseQueue,
    build_bind,
    build_parse,
    build_target,
    rename_in_error,
    split_bind,
    split_parse,
    split_target,
)
from pgmux.proxy.inspector import maybe_effect
from pgmux.routing.classify import deallocate_spans

if TYPE_CHECKING:
    from pgmux.proxy.client import ClientConnection
    from pgmux.proxy.server import ServerConnection

_LENGTH = struct.Struct("!i").unpack_from
_P, _B, _D, _C = ord("P"), ord("B"), ord("D"), ord("C")
_Q, _E, _S, _F = ord("Q"), ord("E"), ord("S"), ord("F")
_STATEMENT = ord("S")

# What the scanner hands over, by situation.
BASE_INTERCEPT = frozenset(b"XQ")
STATEMENT_INTERCEPT = frozenset(b"XQPBDC")
TRACKED_INTERCEPT = frozenset(b"XQPBDCESF")


class ClientStatements:
    """One client's named statements: its name -> (server name, query + parameter types)."""

    __slots__ = ("limit", "names", "private_counter", "queue", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.names: dict[bytes, tuple[bytes, bytes]] = {}
        self.queue = ResponseQueue()
        self.used = False
        self.private_counter = 0


def intercept(
    client: ClientConnection,
    server: ServerConnection,
    msg: memoryview,
    kind: int,
    out: list[bytes | memoryview],
) -> bool:
    """Handle one intercepted message; True when pgmux answered it itself (nothing sent)."""
    if kind == _Q:
        return _query(client, server, msg, out)
    statements = client.statements
    if statements is None:  # session mode, or prepared statements turned off
        out.append(msg)
        return False
    if kind == _P:
        _parse(client, server, statements, msg, out)
    elif kind == _B:
        _bind(client, server, statements, msg, out)
    elif kind == _D or kind == _C:
        _describe_or_close(client, server, statements, msg, kind, out)
    else:
        out.append(msg)
        # In copy-in mode the server ignores a Sync: no reply to expect (see FrontendScanner).
        if client.tracking and not (kind == _S and client.scanner.in_copy):
            statements.queue.expect(Entry(kind))
    return False


def _query(
    client: ClientConnection,
    server: ServerConnection,
    msg: memoryview,
    out: list[bytes | memoryview],
) -> bool:
    """A simple Query: True when pgmux answered it itself.

    Nearly every query passes :func:`maybe_effect`'s byte test and is forwarded untouched; the
    text is copied out once for that test and reused by the slower checks behind it.
    """
    text = bytes(msg[5:-1])
    statements = client.statements
    sent: bytes | memoryview = msg
    if maybe_effect(text):
        if client.pooler.inspector.inspect_text(client, text, _Q):
            return True
        if statements is not None:
            sent = _sql_level(client, server, statements, text, msg, out)
    out.append(sent)
    if statements is not None and client.tracking:
        statements.queue.expect(Entry(_Q))
    return False


def _unnamed_parse(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    msg: memoryview,
    definition: bytes,
    out: list[bytes | memoryview],
) -> memoryview | bytes:
    """The unnamed Parse to send: ``DEALLOCATE name`` (pgjdbc sends it this way) must name
    the statement as the server knows it."""
    end = definition.find(b"\x00")
    text = definition[:end]
    if not text.lstrip()[:10].lower().startswith(b"deallocate") or not _start_tracking(client):
        return msg
    target = _deallocate_target(client, server, statements, text, out)
    return msg if target is None else build_parse(b"", target + definition[end:])


def _expect(client: ClientConnection, entry: Entry) -> None:
    if client.tracking:
        client.statements.queue.expect(entry)  # type: ignore[union-attr]


def _start_tracking(client: ClientConnection) -> bool:
    """Track replies from here on if nothing untracked is still awaiting its reply."""
    scanner = client.scanner
    if not client.tracking and scanner.pending == 0 and not scanner.partial:
        client.tracking = True
        scanner.intercept = TRACKED_INTERCEPT
    return client.tracking


def _parse(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    msg: memoryview,
    out: list[bytes | memoryview],
) -> None:
    name, definition = split_parse(msg)
    client.inspect(msg, _P)
    if not name:
        out.append(_unnamed_parse(client, server, statements, msg, definition, out))
        _expect(client, Entry(_P))
        return
    if name not in statements.names and len(statements.names) >= statements.limit:
        raise PgmuxError(
            PROGRAM_LIMIT_EXCEEDED,
            f"too many prepared statements: this client holds {statements.limit} "
            "(max_client_prepared_statements); close statements it no longer needs",
        )
    statements.used = True
    if not _start_tracking(client):
        _prepare_privately(client, server, statements, name, definition, out)
        return
    if name in statements.names:
        # PostgreSQL refuses a name in use (42P05) and keeps the old statement: have the server
        # say so, by parsing under the old statement's server name where it exists.
        existing = _server_name(client, server, statements, name, out) or name
        out.append(build_parse(existing, definition))
        _expect(client, Entry(_P, rename=(existing, name)))
        return
    server_name = client.pooler.registry.name_for(definition)
    statements.names[name] = (server_name, definition)
    if server_name in server.statements:
        server.statements.touch(server_name)
        _answer(client, statements, PARSE_COMPLETE)
        return
    _prepare_on(server, statements, server_name, definition, out, swallow=False, client_name=name)


def _answer(client: ClientConnection, statements: ClientStatements, reply: bytes) -> None:
    statements.queue.expect(Entry(0, ANSWER, reply))
    due = statements.queue.answers_due()
    if due:
        client.send(due)


def _prepare_on(
    server: ServerConnection,
    statements: ClientStatements,
    server_name: bytes,
    definition: bytes,
    out: list[bytes | memoryview],
    *,
    swallow: bool,
    client_name: bytes = b"",
) -> None:
    for evicted in server.statements.add(server_name):
        out.append(build_target(b"C", _STATEMENT, evicted))
        statements.queue.expect(Entry(_C, SWALLOW, evicted=evicted))
    out.append(build_parse(server_name, definition))
    statements.queue.expect(
        Entry(_P, SWALLOW if swallow else 0, statement=server_name, client_name=client_name)
    )


def _server_name(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    name: bytes,
    out: list[bytes | memoryview],
) -> bytes | None:
    """The server-side name of the client's statement, prepared on ``server`` if need be."""
    known = statements.names.get(name)
    if known is None:
        return None  # unknown: the server's own "does not exist" (26000) is the right answer
    server_name, definition = known
    if server_name in server.statements:
        server.statements.touch(server_name)
    elif _start_tracking(client):
        _prepare_on(server, statements, server_name, definition, out, swallow=True)
    else:  # cannot swallow a reply on an untracked link: prepare under a fresh private name
        server_name = _prepare_privately(client, server, statements, name, definition, out)
    return server_name


def _prepare_privately(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    name: bytes,
    definition: bytes,
    out: list[bytes | memoryview],
) -> bytes:
    """A real Parse under a name only this client uses: its ParseComplete reaches the client
    as is, which is what an untracked link needs (no reply made up or swallowed)."""
    statements.private_counter += 1
    private = b"PGMUX_C%d_%d" % (client.id, statements.private_counter)
    statements.names[name] = (private, definition)
    server.statements.add(private, evict=False)
    out.append(build_parse(private, definition))
    return private


def _bind(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    msg: memoryview,
    out: list[bytes | memoryview],
) -> None:
    portal, name, rest = split_bind(msg)
    server_name = _server_name(client, server, statements, name, out) if name else None
    out.append(msg if server_name is None else build_bind(portal, server_name, rest))
    _expect(client, Entry(_B))


def _describe_or_close(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    msg: memoryview,
    kind: int,
    out: list[bytes | memoryview],
) -> None:
    target, name = split_target(msg)
    if target != _STATEMENT or not name:
        out.append(msg)
        _expect(client, Entry(kind))
        return
    if kind == _C:
        # The server-side statement stays for other clients (and the LRU); only the client's
        # name goes. PostgreSQL answers CloseComplete even for unknown names.
        statements.names.pop(name, None)
        if _start_tracking(client):
            _answer(client, statements, CLOSE_COMPLETE)
        else:
            out.append(build_target(b"C", _STATEMENT, b"PGMUX_NONE"))
        return
    server_name = _server_name(client, server, statements, name, out)
    out.append(msg if server_name is None else build_target(b"D", _STATEMENT, server_name))
    _expect(client, Entry(kind))


_DEALLOCATE = re.compile(
    rb'\s*DEALLOCATE\s+(?:PREPARE\s+)?(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*))\s*;?\s*',
    re.IGNORECASE,
)


def _sql_level(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    text: bytes,
    msg: memoryview,
    out: list[bytes | memoryview],
) -> memoryview | bytes:
    """SQL that acts on protocol-level statements: DEALLOCATE [ALL], DISCARD ALL.

    Returns the Query to send, rewritten when DEALLOCATE names one of the client's statements.
    """
    low = text.lower()
    if b"deallocate" not in low and b"discard" not in low:
        return msg  # the common case, decided without a regex
    upper = text.strip().rstrip(b";").strip().upper()
    if upper in (b"DEALLOCATE ALL", b"DEALLOCATE PREPARE ALL", b"DISCARD ALL"):
        statements.names.clear()
        server.statements.clear()
        return msg
    if not client.tracking or b"deallocate" not in low:
        return msg
    target = _deallocate_target(client, server, statements, text, out)
    if target is None:  # not one DEALLOCATE of a held name: maybe one among several statements
        target = _rename_deallocates(client, server, statements, text, out)
    return msg if target is None else m.query(target.decode())


def _rename_deallocates(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    text: bytes,
    out: list[bytes | memoryview],
) -> bytes | None:
    """``text`` with every ``DEALLOCATE name`` statement in it renamed to the server's name
    (``SELECT 1; DEALLOCATE s``); None when none of them names a statement the client holds."""
    parts: list[bytes] = []
    done = 0
    for start, end in deallocate_spans(text):
        target = _deallocate_target(client, server, statements, text[start:end], out)
        if target is not None:
            parts += (text[done:start], target)
            done = end
    if not parts:
        return None
    parts.append(text[done:])
    return b"".join(parts)


def _deallocate_target(
    client: ClientConnection,
    server: ServerConnection,
    statements: ClientStatements,
    text: bytes,
    out: list[bytes | memoryview],
) -> bytes | None:
    """``DEALLOCATE "server name"`` for a ``DEALLOCATE name`` of one of the client's statements,
    which is forgotten here; None to send the text as it is (not such a statement, or a name
    the client does not hold: PostgreSQL's own 26000 is then the right answer)."""
    match = _DEALLOCATE.fullmatch(text)
    if match is None:
        return None
    quoted, plain = match.groups()
    name = quoted.replace(b'""', b'"') if quoted is not None else plain.lower()
    server_name = _server_name(client, server, statements, name, out)
    if server_name is None:
        return None
    del statements.names[name]
    server.statements.discard(server_name)
    return b'DEALLOCATE "' + server_name + b'"'


def relay_tracked(
    server: ServerConnection, client: ClientConnection, view: memoryview, nbytes: int
) -> None:
    """Forward the server's replies one by one, as the client's ResponseQueue says."""
    buf = server.reply_buffer
    buf += view[:nbytes]
    queue = client.statements.queue  # type: ignore[union-attr]
    out = bytearray(queue.answers_due())
    ready = 0
    status = 0
    pos = 0
    limit = server.scanner.max_length
    while len(buf) - pos >= 5:
        kind = buf[pos]
        length = _LENGTH(buf, pos + 1)[0]
        if length < 4 or length > limit:
            raise bad_length(length, limit)
        end = pos + length + 1
        if end > len(buf):
            break
        head = queue.entries[0] if queue.entries else None
        forward = queue.on_reply(kind)
        if queue.dropped:
            undo_dropped(client, server)
        if kind == 0x45:
            _server_error(client, buf[pos + 5 : end])
        if forward and kind == 0x45 and head is not None and head.rename is not None:
            out += rename_in_error(bytes(buf[pos:end]), *head.rename)
        elif forward:
            out += buf[pos:end]
        if kind == 0x5A:  # ReadyForQuery
            ready += 1
            status = buf[pos + 5]
        elif kind == 0x47:  # CopyInResponse
            client.copy_in_started(ready)
        elif kind == 0x53:  # ParameterStatus
            server.parameter_reported(bytes(buf[pos + 5 : end]), client)
        out += queue.answers_due()
        pos = end
    del buf[:pos]
    if out:
        client.send(bytes(out))
    server.pool.stats.sent += nbytes
    if ready:
        server.tx_status = status
        client.server_ready(server, status, ready)


def _server_error(client: ClientConnection, body: bytearray) -> None:
    """After a schema change a shared statement's plan is stale ("cached plan must not change
    result type"): drivers such as asyncpg prepare again under a new name, which must then
    reach the server as a new statement instead of being answered from pgmux's records."""
    if b"C0A000\x00" in body and b"cached plan" in body:
        client.pooler.registry.invalidate()


def undo_dropped(client: ClientConnection, server: ServerConnection) -> None:
    """Forget what pgmux recorded for requests the server skipped or failed."""
    statements = client.statements
    assert statements is not None
    for entry in statements.queue.dropped:
        if entry.statement:
            server.statements.discard(entry.statement)
            if entry.client_name and statements.names.get(entry.client_name, (b"",))[0] == (
                entry.statement
            ):
                del statements.names[entry.client_name]  # as PostgreSQL: no such statement
        if entry.evicted:
            server.statements.add(entry.evicted, evict=False)  # still there after all
    statements.queue.dropped.clear()
