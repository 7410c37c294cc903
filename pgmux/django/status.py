"""Plain-text tables of pgmux's pools, clients and servers, for ``manage.py pgmux_status``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pgmux.django.console import Console, Endpoint

__all__ = ["SECTIONS", "format_table", "render_status"]

# What to show of each SHOW command: the columns an operator reads first.
SECTIONS: dict[str, tuple[str, ...]] = {
    "pools": (
        "database",
        "user",
        "pool_mode",
        "cl_active",
        "cl_waiting",
        "sv_active",
        "sv_idle",
        "sv_used",
        "sv_login",
        "maxwait",
    ),
    "clients": (
        "user",
        "database",
        "state",
        "addr",
        "port",
        "connect_time",
        "request_time",
        "wait",
        "application_name",
    ),
    "servers": (
        "user",
        "database",
        "state",
        "addr",
        "port",
        "connect_time",
        "request_time",
        "remote_pid",
        "application_name",
    ),
}


def format_table(columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> str:
    """An aligned table: text left, numbers right, as psql does."""
    cells = [[("" if row.get(c) is None else str(row.get(c))) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), int) for row in rows) and bool(rows) for c in columns]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return " | ".join(parts).rstrip()

    out = [line(list(columns)), "-+-".join("-" * w for w in widths)]
    out += [line(r) for r in cells]
    out.append(f"({len(rows)} row{'s' if len(rows) != 1 else ''})")
    return "\n".join(out)


def render_status(endpoint: Endpoint, aliases: Sequence[str], sections: Sequence[str]) -> str:
    parts = [f"pgmux at {endpoint.label} (DATABASES: {', '.join(aliases)})"]
    with Console(endpoint) as console:
        for section in sections:
            rows = console.show(section.upper())
            parts.append(f"\n{section.upper()}\n{format_table(SECTIONS[section], rows)}")
    return "\n".join(parts) + "\n"
