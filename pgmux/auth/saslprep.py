"""SASLprep (RFC 4013) of passwords, exactly as PostgreSQL applies it before SCRAM hashing.

Contract: ``saslprep(password)`` returns the bytes PostgreSQL feeds to PBKDF2 for that password.
PostgreSQL (``src/common/saslprep.c``) differs from a strict RFC 4013 implementation in two ways
that matter for interoperability, and this module follows PostgreSQL:

* a pure-ASCII password is used unchanged (even if it holds control characters);
* a password that SASLprep would reject (prohibited or unassigned characters, bad bidi, or empty
  after mapping) is not an error: its raw UTF-8 bytes are used instead.

Python's ``stringprep`` module supplies the RFC 3454 tables (Unicode 3.2, like PostgreSQL's).
"""

from __future__ import annotations

import stringprep
import unicodedata
from collections.abc import Callable

__all__ = ["saslprep"]

# RFC 4013 section 2.3: every table of prohibited output, plus unassigned code points (A.1).
# C.1.2 (non-ASCII spaces) is listed for completeness; step 1 has already mapped those away.
_PROHIBITED: tuple[Callable[[str], bool], ...] = (
    stringprep.in_table_c12,
    stringprep.in_table_c21,
    stringprep.in_table_c22,
    stringprep.in_table_c3,
    stringprep.in_table_c4,
    stringprep.in_table_c5,
    stringprep.in_table_c6,
    stringprep.in_table_c7,
    stringprep.in_table_c8,
    stringprep.in_table_c9,
    stringprep.in_table_a1,
)


def saslprep(password: str) -> bytes:
    """Return the bytes of ``password`` that go into SCRAM's SaltedPassword."""
    if password.isascii():
        return password.encode("ascii")
    prepared = _prepare(password)
    return (password if prepared is None else prepared).encode("utf-8")


def _prepare(text: str) -> str | None:
    """Apply RFC 4013 map, normalize, prohibit and bidi steps; None if the result is rejected."""
    mapped = "".join(_map_char(char) for char in text)
    if not mapped:
        # PostgreSQL refuses an empty result (a password of only soft hyphens, say).
        return None
    normalized = unicodedata.normalize("NFKC", mapped)
    if any(check(char) for char in normalized for check in _PROHIBITED):
        return None
    if not _bidi_ok(normalized):
        return None
    return normalized


def _map_char(char: str) -> str:
    """RFC 4013 section 2.1: non-ASCII spaces become SPACE, B.1 characters vanish."""
    if stringprep.in_table_c12(char):
        return " "
    if stringprep.in_table_b1(char):
        return ""
    return char


def _bidi_ok(text: str) -> bool:
    """RFC 3454 section 6: a string with RandALCat characters has no LCat ones and starts and
    ends with RandALCat. (Section 6 rule 1, table C.8, is part of the prohibited check.)"""
    if not any(stringprep.in_table_d1(char) for char in text):
        return True
    if any(stringprep.in_table_d2(char) for char in text):
        return False
    return stringprep.in_table_d1(text[0]) and stringprep.in_table_d1(text[-1])
