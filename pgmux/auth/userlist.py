"""PgBouncer's ``auth_file`` (userlist.txt): user names and their passwords or secrets.

Format, one entry per line::

    "username" "password, md5 secret or SCRAM secret"   anything after is ignored

Inside quotes a double quote is written twice (``""``). Blank lines and lines whose first
non-blank character is ``;`` or ``#`` are comments. When a user appears twice the later line wins,
as in PgBouncer.

Contract: ``parse_userlist`` returns ``{user: password_or_secret}`` or raises ``UserlistError``
naming the source and the 1-based line number. Error messages never contain a password or secret,
so they can be logged and shown on the admin console.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["UserlistError", "load_userlist", "parse_userlist"]

_BLANKS = " \t\f\v"
_EXPECTED = 'expected "user" "password"'


class UserlistError(ValueError):
    """A malformed auth_file line. ``line`` is 1-based; the message holds no secret."""

    def __init__(self, source: str, line: int, reason: str) -> None:
        super().__init__(f"{source} line {line}: {reason}")
        self.source = source
        self.line = line
        self.reason = reason


class _LineError(Exception):
    """Why one line is malformed; parse_userlist adds the source and line number."""


def parse_userlist(text: str, *, source: str = "auth_file") -> dict[str, str]:
    """Parse auth_file contents; ``source`` names the file in error messages."""
    users: dict[str, str] = {}
    # split("\n") rather than splitlines(): the latter also breaks on characters such as
    # U+2028 or \x1c, which may legitimately sit inside a quoted password.
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.removesuffix("\r").lstrip(_BLANKS)
        if not line or line[0] in ";#":
            continue
        try:
            user, password = _parse_entry(line)
        except _LineError as exc:
            raise UserlistError(source, number, str(exc)) from None
        users[user] = password
    return users


def load_userlist(path: str | os.PathLike[str]) -> dict[str, str]:
    """Read and parse an auth_file (UTF-8, an optional byte-order mark is skipped)."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise UserlistError(os.fspath(path), line, "not valid UTF-8") from None
    return parse_userlist(text, source=os.fspath(path))


def _parse_entry(line: str) -> tuple[str, str]:
    """Read the two quoted fields at the start of ``line`` (which starts with its first field)."""
    user, end = _quoted_field(line, 0)
    if not user:
        raise _LineError("empty user name")
    password, _ = _quoted_field(line, _skip_blanks(line, end))
    return user, password


def _quoted_field(line: str, start: int) -> tuple[str, int]:
    """The quoted field at ``line[start]``: its value and the index past its closing quote."""
    if line[start : start + 1] != '"':
        raise _LineError(_EXPECTED)
    chunks = []
    position = start + 1
    while True:
        quote = line.find('"', position)
        if quote < 0:
            raise _LineError(f"{_EXPECTED} (unterminated quote)")
        chunks.append(line[position:quote])
        if line[quote + 1 : quote + 2] != '"':
            return "".join(chunks), quote + 1
        chunks.append('"')  # a doubled quote stands for one
        position = quote + 2


def _skip_blanks(line: str, position: int) -> int:
    while position < len(line) and line[position] in _BLANKS:
        position += 1
    return position
