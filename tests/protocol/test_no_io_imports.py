"""The sans-IO layers stay sans-IO: pgmux.protocol and pgmux.auth import no event loop, socket,
TLS or clock, directly (checked on the source with ``ast``) or through anything they import."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import pgmux.auth
import pgmux.protocol

FORBIDDEN = frozenset({"asyncio", "socket", "ssl", "time", "selectors", "uvloop"})
PACKAGES = {"pgmux.protocol": pgmux.protocol, "pgmux.auth": pgmux.auth}
# Where each sans-IO package may reach inside pgmux (protocol is the bottom layer).
ALLOWED_INTERNAL = {
    "pgmux.protocol": ("pgmux.protocol",),
    "pgmux.auth": ("pgmux.auth", "pgmux.protocol"),
}
SOURCES = sorted(
    (name, path)
    for name, package in PACKAGES.items()
    for path in Path(package.__path__[0]).rglob("*.py")
)


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported by ``path``, including ``__import__("x")`` and
    ``importlib.import_module("x")`` with a literal name."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            modules.add(node.module)
        elif isinstance(node, ast.Call) and node.args:
            func, first = node.func, node.args[0]
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            if (
                name in ("__import__", "import_module")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                modules.add(first.value)
    return modules


def test_sources_found() -> None:
    names = {path.name for _, path in SOURCES}
    assert {"framing.py", "messages.py", "startup.py", "errors.py"} <= names
    assert {"scram.py", "md5.py"} <= names


def test_checker_sees_every_import_form(tmp_path: Path) -> None:
    source = tmp_path / "sample.py"
    source.write_text(
        "import os, asyncio.events\n"
        "from time import monotonic\n"
        "from . import sibling\n"
        "import importlib\n"
        "socket = importlib.import_module('socket')\n"
        "ssl = __import__('ssl')\n"
        "def f():\n"
        "    import selectors\n",
        encoding="utf-8",
    )
    roots = {name.split(".")[0] for name in imported_modules(source)}
    assert roots == {"os", "asyncio", "time", "importlib", "socket", "ssl", "selectors"}


@pytest.mark.parametrize(
    ("package", "path"), SOURCES, ids=[f"{p}/{path.name}" for p, path in SOURCES]
)
def test_no_io_imports(package: str, path: Path) -> None:
    modules = imported_modules(path)
    roots = {name.split(".")[0] for name in modules}
    assert not roots & FORBIDDEN, f"{path} imports {sorted(roots & FORBIDDEN)}"
    internal = {name for name in modules if name.split(".")[0] == "pgmux"}
    outside = {n for n in internal if not n.startswith(ALLOWED_INTERNAL[package])}
    assert not outside, f"{path} reaches outside its layer: {sorted(outside)}"


def test_no_io_modules_loaded_transitively() -> None:
    """Importing every sans-IO module in a fresh interpreter loads no I/O module either.

    ``time`` is left out here: the interpreter itself loads it at startup.
    """
    modules = [
        f"{package}.{path.relative_to(Path(PACKAGES[package].__path__[0])).with_suffix('')}".replace(
            "/", "."
        ).removesuffix(".__init__")
        for package, path in SOURCES
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "print(' '.join(sorted(m for m in sys.modules "
        f"if m.split('.')[0] in {sorted(FORBIDDEN - {'time'})!r})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
        cwd=Path(pgmux.protocol.__path__[0]).parents[1],  # the checkout, whatever pytest's cwd
    )
    assert result.stdout.split() == []
