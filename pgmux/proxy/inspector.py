"""What a client's SQL does beyond its transaction: session pinning and database DDL.

Every Query (and the query of every Parse) is looked up in a :class:`StatementCache`; almost
all texts are answered by its pre-filter or its LRU, without parsing. Two kinds of effect
matter to the pooler:

- *Session state* in transaction or statement mode (a plain SET of an untracked parameter,
  LISTEN, a session advisory lock, a temporary table, a WITH HOLD cursor, SQL PREPARE, LOAD).
  Under ``session_state = pin`` the client keeps its server connection until it disconnects or
  releases the state; ``error`` refuses the statement; ``allow`` is PgBouncer's behaviour.
- *DROP DATABASE* and *CREATE DATABASE ... TEMPLATE*: PostgreSQL refuses both while anyone is
  connected to that database, and pgmux's own idle server connections would be those sessions.
  pgmux closes them first (and marks busy ones to close when released).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from pgmux.protocol import messages as m
from pgmux.protocol.errors import FEATURE_NOT_SUPPORTED, PgmuxError
from pgmux.routing.classify import ANY_PARAMETER, RELEASED_BY, StatementCache

if TYPE_CHECKING:
    from pgmux.proxy.client import ClientConnection
    from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux.client")

_Q = ord("Q")

# A gate in front of the cache: most texts an application sends (SELECT/INSERT/UPDATE/DELETE
# with inline values, so each text is new) cannot have any effect pgmux acts on, and a few
# byte searches say so much faster than a cache miss (or a regex). It must let through every
# text classify() could give a pin, a release or a database name: anything that does not start
# with a plain DML/transaction keyword, several statements, the function names that take
# session locks or set parameters, and SELECT ... INTO a temporary table.
_PLAIN_STARTS = (
    b"select",
    b"insert",
    b"update",
    b"delete",
    b"with",
    b"begin",
    b"commit",
    b"rollback",
    b"end",
    b"start",
    b"savepoint",
    b"release",
    b"values",
    b"table",
    b"show",
    b"abort",
    b"copy",
    b"explain",
    b"fetch",
    b"move",
    b"truncate",
    b"lock",
    b"merge",
    b"notify",
)


def maybe_effect(text: bytes) -> bool:
    low = text.lower()
    start = low.lstrip()
    if not start.startswith(_PLAIN_STARTS):
        return True
    if b";" in start.rstrip(b"; \t\r\n"):
        return True  # several statements (or a ; inside a literal): let the cache decide
    # Spelled out rather than any() over a tuple: this runs for every query.
    if b"advisory" in low or b"set_config" in low or b"u&" in low:
        return True
    return b"into" in low and b"temp" in low


WHY = {
    "set": "SET of a session parameter (use SET LOCAL inside a transaction)",
    "set_role": "SET ROLE / SET SESSION AUTHORIZATION",
    "listen": "LISTEN",
    "advisory_lock": "a session-level advisory lock (use pg_advisory_xact_lock)",
    "temp_table": "a temporary table that outlives the transaction (use ON COMMIT DROP)",
    "cursor_with_hold": "DECLARE ... WITH HOLD",
    "prepare": "SQL-level PREPARE",
    "load": "LOAD",
}


# WITH HOLD cursors are released one by one (Django's iterator() closes its cursor by name):
# the names are kept per client so that the pin goes with the last of them.
_DECLARE = re.compile(rb'\s*declare\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)', re.IGNORECASE)
_CLOSE = re.compile(rb'\s*close\s+("(?:[^"]|"")+"|[a-z_][a-z0-9_$]*)\s*;?\s*', re.IGNORECASE)


def cursor_name(match: re.Match[bytes] | None) -> bytes | None:
    if match is None:
        return None
    name = match.group(1)
    if name.startswith(b'"'):
        return name[1:-1].replace(b'""', b'"')
    return name.lower()


def query_text(msg: memoryview, kind: int) -> bytes:
    """The SQL of a Query or Parse message."""
    if kind == _Q:
        return bytes(msg[5:-1])
    body = bytes(msg[5:])
    start = body.find(b"\x00") + 1
    end = body.find(b"\x00", start)
    return body[start:end] if end >= 0 else b""


def _forget_statements(client: ClientConnection) -> None:
    """DEALLOCATE ALL / DISCARD ALL, however sent: every prepared statement is gone."""
    if client.statements is not None:
        client.statements.names.clear()
    if client.server is not None:
        client.server.statements.clear()


class Inspector:
    def __init__(self, pooler: Pooler) -> None:
        self.pooler = pooler
        self.cache = StatementCache()

    def inspect(self, client: ClientConnection, msg: memoryview, kind: int) -> bool:
        """Apply what the statement does; True when pgmux answered it and it must not be sent."""
        text = query_text(msg, kind)
        if not maybe_effect(text):
            return False
        return self.inspect_text(client, text, kind)

    def inspect_text(self, client: ClientConnection, text: bytes, kind: int) -> bool:
        """:meth:`inspect` for a ``text`` that :func:`maybe_effect` let through."""
        if client.hold_cursors and text.lstrip()[:5].lower() == b"close":
            self._close_cursor(client, text)
        found = self.cache.lookup(text)
        if not (
            found.pins or found.releases or found.drop_databases or found.create_from_templates
        ):
            return False
        for name in found.drop_databases + found.create_from_templates:
            self.pooler.release_database(name)
        if "deallocate_all" in found.releases or "discard_all" in found.releases:
            _forget_statements(client)
        if not client.releases and not client.pinned:
            return False  # session mode: the connection is the client's anyway
        pins = self._pins(found.pins, found.set_names)
        if pins:
            policy = client.session_state
            if policy == "error":
                return self._refuse(client, kind, pins)
            if policy == "pin":
                client.pin(pins)
                if "cursor_with_hold" in pins:
                    # Unnamed if the regex cannot tell: then only CLOSE ALL/DISCARD ALL unpin.
                    cursor = cursor_name(_DECLARE.match(text)) or b"\x00unknown"
                    client.hold_cursors.add(cursor)
        if found.releases and client.pinned:
            released: set[str] = set()
            for release in found.releases:
                released |= RELEASED_BY.get(release, frozenset())
            if "cursor_with_hold" in released:
                client.hold_cursors.clear()
            client.unpin(released)
        return False

    @staticmethod
    def _close_cursor(client: ClientConnection, text: bytes) -> None:
        name = cursor_name(_CLOSE.fullmatch(text))
        if name is None:
            return
        client.hold_cursors.discard(name)
        if not client.hold_cursors:
            client.unpin({"cursor_with_hold"})

    def _pins(self, pins: tuple[str, ...], set_names: tuple[str, ...]) -> tuple[str, ...]:
        if "set" not in pins:
            return pins
        tracked = self.pooler.tracked  # lower-case name -> canonical
        if all(name != ANY_PARAMETER and name in tracked for name in set_names):
            # Reported parameters follow the client anyway: no need to pin for them.
            return tuple(p for p in pins if p != "set")
        return pins

    def _refuse(self, client: ClientConnection, kind: int, pins: tuple[str, ...]) -> bool:
        why = "; ".join(WHY.get(p, p) for p in pins)
        error = PgmuxError(
            FEATURE_NOT_SUPPORTED,
            f"not allowed in {client.pool_mode} pooling mode: {why} would outlive the "
            "transaction and reach other clients",
            severity="ERROR",
            hint="set session_state = pin (or use session mode) to allow it",
        )
        scanner = client.scanner
        server = client.server
        if kind == _Q and scanner.pending == 0 and not scanner.partial and server is not None:
            # Nothing else is in flight: answer like PostgreSQL would and keep the session.
            client.send(m.error_response(error) + m.ready_for_query(server.tx_status))
            return True
        raise PgmuxError(FEATURE_NOT_SUPPORTED, error.message, hint=error.hint)
