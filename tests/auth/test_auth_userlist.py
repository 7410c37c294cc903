"""auth_file (userlist.txt) parsing: PgBouncer's format, comments, quoting and error reports."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pgmux.auth import UserlistError, load_userlist, parse_userlist

SAMPLE = """\
; PgBouncer-style comment
# shell-style comment

"alice" "md53175bce1d3201d16594cebf9d7eb3f9d"
"bob" "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5"   trailing notes are ignored
   "carol"	"plain password"
"dave ""the quote"" smith" "pa""ss"
"erin" ""
"""


def quote(value: str) -> str:
    return '"' + value.replace('"', '""') + '"'


def test_parse_sample() -> None:
    assert parse_userlist(SAMPLE) == {
        "alice": "md53175bce1d3201d16594cebf9d7eb3f9d",
        "bob": "SCRAM-SHA-256$4096:c2FsdA==$a2V5:a2V5",
        "carol": "plain password",
        'dave "the quote" smith': 'pa"ss',
        "erin": "",
    }


def test_empty_and_comment_only() -> None:
    assert parse_userlist("") == {}
    assert parse_userlist("\n\n  \n; nothing\n  # here\n") == {}


def test_crlf_line_endings() -> None:
    assert parse_userlist('"a" "1"\r\n"b" "2"\r\n') == {"a": "1", "b": "2"}


def test_later_entry_wins() -> None:
    assert parse_userlist('"a" "old"\n"a" "new"\n') == {"a": "new"}


def test_unicode_line_separators_stay_inside_fields() -> None:
    assert parse_userlist('"a" "x\u2028y\x1cz"\n') == {"a": "x\u2028y\x1cz"}


def test_fields_need_not_be_separated_by_blanks() -> None:
    assert parse_userlist('"a""" "b"') == {'a"': "b"}
    assert parse_userlist('"a""b"  "c"') == {'a"b': "c"}


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [
        ('alice "secret-1"', 1, 'expected "user" "password"'),
        ('"alice"', 1, 'expected "user" "password"'),
        ('"alice" secret-1', 1, 'expected "user" "password"'),
        ('"alice" "secret-1', 1, "unterminated quote"),
        ('"alice secret-1', 1, "unterminated quote"),
        ('"alice"x"secret-1"', 1, 'expected "user" "password"'),
        ('"" "secret-1"', 1, "empty user name"),
        ('; comment\n\n"ok" "fine"\n"alice" "secret-1', 4, "unterminated quote"),
        ('"a" "1"\n"b" "2"\n"alice" \'secret-1\'', 3, 'expected "user" "password"'),
        ('"alice" "secret-1\n"', 1, "unterminated quote"),
    ],
)
def test_errors_name_the_line_and_hide_the_secret(text: str, line: int, reason: str) -> None:
    with pytest.raises(UserlistError) as info:
        parse_userlist(text)
    error = info.value
    assert isinstance(error, ValueError)
    assert error.line == line
    assert str(error).startswith(f"auth_file line {line}: ")
    assert reason in str(error)
    assert "secret-1" not in str(error)


def test_error_names_the_source() -> None:
    with pytest.raises(UserlistError, match=r"^/etc/userlist\.txt line 2: "):
        parse_userlist('"a" "1"\nnonsense\n', source="/etc/userlist.txt")


def test_load_userlist(tmp_path: Path) -> None:
    path = tmp_path / "userlist.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    assert load_userlist(path) == parse_userlist(SAMPLE)
    assert load_userlist(str(path)) == parse_userlist(SAMPLE)


def test_load_userlist_skips_byte_order_mark(tmp_path: Path) -> None:
    path = tmp_path / "userlist.txt"
    path.write_bytes(b'\xef\xbb\xbf"a" "\xc3\xa9"\n')
    assert load_userlist(path) == {"a": "\u00e9"}


def test_load_userlist_reports_bad_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "userlist.txt"
    path.write_bytes(b'"a" "1"\n"b" "secret-\xff"\n')
    with pytest.raises(UserlistError, match="line 2: not valid UTF-8") as info:
        load_userlist(path)
    assert info.value.line == 2
    assert str(path) in str(info.value)
    assert "secret" not in str(info.value).replace(str(path), "")


def test_load_userlist_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_userlist(tmp_path / "absent.txt")


_FIELD = st.text(st.characters(codec="utf-8", exclude_characters="\n"))


@given(st.dictionaries(_FIELD.filter(bool), _FIELD, max_size=8))
def test_round_trip(users: dict[str, str]) -> None:
    text = "".join(f"{quote(user)} {quote(password)}\n" for user, password in users.items())
    assert parse_userlist(text) == users
