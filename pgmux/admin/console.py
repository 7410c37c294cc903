"""The admin console session: simple-query protocol in, result sets out.

A client that logged in to the virtual database ``pgmux`` (or ``pgbouncer``) talks to this
instead of a server. Each Query may hold several ``;``-separated commands, as with PgBouncer;
each is looked up in :data:`pgmux.admin.commands.COMMANDS` and answered with a RowDescription,
DataRows and a CommandComplete, or an ERROR that leaves the session usable.
"""

from __future__ import annotations

import asyncio
import inspect
import struct
from collections.abc import Callable
from typing import TYPE_CHECKING

from pgmux.admin.commands import COMMANDS, AdminError, Result
from pgmux.protocol import messages as m
from pgmux.protocol.errors import INSUFFICIENT_PRIVILEGE, PROTOCOL_VIOLATION, SYNTAX_ERROR

if TYPE_CHECKING:
    from pgmux.proxy.client import ClientConnection
    from pgmux.proxy.pooler import Pooler

_LENGTH = struct.Struct("!i").unpack_from
_TRANSACTION_VERBS = frozenset({"BEGIN", "START", "COMMIT", "END", "ROLLBACK", "ABORT"})


class AdminSession:
    def __init__(self, pooler: Pooler, client: ClientConnection) -> None:
        self.pooler = pooler
        self.client = client
        self.buffer = bytearray()
        self.is_admin = client.user in pooler.admin_users
        self.queue: list[str] = []
        self.task: asyncio.Task[None] | None = None

    def feed(self, data: bytes) -> None:
        self.buffer += data
        buf = self.buffer
        while len(buf) >= 5:
            kind = buf[0]
            length = _LENGTH(buf, 1)[0]
            if length < 4 or length > 1_000_000:
                self._protocol_error(f"invalid message length {length}")
                return
            if len(buf) < length + 1:
                return
            body = bytes(buf[5 : length + 1])
            del buf[: length + 1]
            if kind == ord("X"):
                self.client.close_quietly()
                return
            if kind != ord("Q"):
                self._protocol_error(
                    "the admin console supports only the simple query protocol "
                    "(use psql, or a driver in simple-query mode)"
                )
                return
            self._run(m.parse_query(body))

    def _protocol_error(self, text: str) -> None:
        from pgmux.protocol.errors import PgmuxError

        self.client.fail(PgmuxError(PROTOCOL_VIOLATION, text))

    def _run(self, text: str) -> None:
        # Commands such as PAUSE answer only once done: run queries in order, in a task.
        self.queue.append(text)
        if self.task is None or self.task.done():
            self.task = self.pooler.loop.create_task(self._drain())

    async def _drain(self) -> None:
        while self.queue:
            text = self.queue.pop(0)
            reply, after = await self._answer(text)
            self.client.send(reply)
            if after is not None:
                after()

    async def _answer(self, text: str) -> tuple[bytes, Callable[[], None] | None]:
        out: list[bytes] = []
        after: Callable[[], None] | None = None
        statements = [s.strip() for s in text.split(";") if s.strip()]
        if not statements:
            out.append(m.empty_query_response())
        for statement in statements:
            try:
                result = await self._execute(statement)
            except AdminError as exc:
                out.append(
                    m.message(
                        m.ERROR_RESPONSE,
                        m.error_fields("ERROR", exc.sqlstate, exc.message, hint=exc.hint),
                    )
                )
                break
            out.append(encode_result(result))
            after = result.after or after
        out.append(m.ready_for_query())
        return b"".join(out), after

    async def _execute(self, statement: str) -> Result:
        words = statement.split()
        verb = words[0].upper()
        if verb == "SHOW" and len(words) >= 2:
            name, args = f"SHOW {words[1].upper()}", words[2:]
        else:
            name, args = verb, words[1:]
        command = COMMANDS.get(name)
        if command is None:
            hint = "SHOW HELP lists the commands"
            if verb in _TRANSACTION_VERBS:  # a driver that opens transactions by itself
                hint = "the admin console has no transactions: connect in autocommit mode"
            raise AdminError(SYNTAX_ERROR, f"invalid command {statement!r}", hint=hint)
        if command.admin_only and not self.is_admin:
            raise AdminError(INSUFFICIENT_PRIVILEGE, f"{name} needs a user listed in admin_users")
        result = command.handler(self.pooler, args)
        if inspect.isawaitable(result):
            return await result
        return result


def encode_result(result: Result) -> bytes:
    if result.columns is None:
        return m.command_complete(result.tag)
    parts = [m.row_description(result.columns)]
    parts.extend(m.data_row(row) for row in result.rows)
    parts.append(m.command_complete(result.tag))
    return b"".join(parts)
