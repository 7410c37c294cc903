"""pgmux.auth stays sans-IO: none of its modules imports an event loop, sockets, TLS or clocks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import pgmux.auth

FORBIDDEN = {"asyncio", "socket", "ssl", "time", "selectors", "uvloop"}
MODULES = sorted(Path(pgmux.auth.__file__).parent.glob("*.py"))


def imported_roots(path: Path) -> set[str]:
    roots: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_modules_found() -> None:
    assert {path.name for path in MODULES} >= {"scram.py", "md5.py", "secrets.py", "userlist.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_no_io_imports(path: Path) -> None:
    assert imported_roots(path).isdisjoint(FORBIDDEN)
