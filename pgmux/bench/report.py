"""The report: per-cell medians over rounds, ratios, and their text, Markdown and JSON forms.

A cell is one (workload, client count, target). Its tps, latencies and pooler CPU (in seconds
and per transaction) are medians over the rounds that produced the figure; its failures are
summed over all rounds. Ratios are pgmux's tps over the other target's, so above 1 means pgmux
was faster. Nothing here judges a number: the report only shows them.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pgmux.bench.results import IdleResult, RunResult
from pgmux.bench.targets import DIRECT, PGBOUNCER, PGMUX, TARGETS

R = TypeVar("R", RunResult, IdleResult)


@dataclass(frozen=True)
class Cell:
    workload: str
    clients: int
    target: str
    tps: float | None
    latency_ms: float | None
    p99_ms: float | None
    failed: int
    pooler_cpu_s: float | None
    rounds: int
    cpu_us_per_transaction: float | None = None
    round_tps: tuple[tuple[int, float], ...] = ()  # (round, tps) of every round with a figure


@dataclass(frozen=True)
class IdleCell:
    target: str
    clients: int
    opened: int
    rss_before_kb: float
    rss_after_kb: float
    per_conn_kb: float | None
    rounds: int


@dataclass(frozen=True)
class NotRun:
    workload: str
    target: str
    reason: str


@dataclass(frozen=True)
class AddedLatency:
    """Mean latency a pooler adds over direct PostgreSQL at 1 client (`select`), in ms."""

    direct_ms: float
    pgmux_ms: float | None
    pgbouncer_ms: float | None

    @property
    def ratio(self) -> float | None:
        return ratio(self.pgmux_ms, self.pgbouncer_ms)


@dataclass
class Report:
    meta: dict[str, Any]
    runs: list[RunResult] = field(default_factory=list)
    idle_runs: list[IdleResult] = field(default_factory=list)
    not_run: list[NotRun] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def median(values: Iterable[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def _grouped(results: Sequence[R]) -> dict[tuple[str, int, str], list[R]]:
    """Results by (workload, clients, target), in workload order, then clients, then target."""
    workload_order = {name: i for i, name in enumerate(dict.fromkeys(r.workload for r in results))}

    def key(r: R) -> tuple[int, int, int]:
        return workload_order[r.workload], r.clients, TARGETS.index(r.target)

    groups: dict[tuple[str, int, str], list[R]] = {}
    for result in sorted(results, key=key):
        groups.setdefault((result.workload, result.clients, result.target), []).append(result)
    return groups


def pgbench_cells(runs: Sequence[RunResult]) -> list[Cell]:
    return [
        Cell(
            workload=workload,
            clients=clients,
            target=target,
            tps=median(r.tps for r in group),
            latency_ms=median(r.latency_ms for r in group),
            p99_ms=median(r.p99_ms for r in group),
            failed=sum(r.failed for r in group),
            pooler_cpu_s=median(r.pooler_cpu_s for r in group),
            rounds=len(group),
            cpu_us_per_transaction=median(r.cpu_us_per_transaction for r in group),
            round_tps=tuple((r.round, r.tps) for r in group if r.tps is not None),
        )
        for (workload, clients, target), group in _grouped(runs).items()
    ]


def idle_cells(runs: Sequence[IdleResult]) -> list[IdleCell]:
    return [
        IdleCell(
            target=target,
            clients=clients,
            opened=min(r.opened for r in group),
            rss_before_kb=statistics.median(r.rss_before_kb for r in group),
            rss_after_kb=statistics.median(r.rss_after_kb for r in group),
            per_conn_kb=median(r.per_conn_kb for r in group),
            rounds=len(group),
        )
        for (_, clients, target), group in _grouped(runs).items()
    ]


def added_latency(cells: Sequence[Cell]) -> AddedLatency | None:
    """Pooler minus direct mean latency for `select` at 1 client; None without a direct figure."""
    at_one = {c.target: c.latency_ms for c in cells if c.workload == "select" and c.clients == 1}
    direct = at_one.get(DIRECT)
    if direct is None:
        return None

    def added(target: str) -> float | None:
        latency = at_one.get(target)
        return None if latency is None else latency - direct

    return AddedLatency(direct, added(PGMUX), added(PGBOUNCER))


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def round_ratio_range(cell: Cell, other: Cell | None) -> tuple[float, float] | None:
    """The lowest and highest of ``cell``'s tps over ``other``'s, round by round.

    Rounds run the targets back to back, so a round's ratio compares like with like; the
    spread over rounds shows how far one run's ratio can be trusted on this machine. None
    with fewer than two rounds to compare.
    """
    if other is None:
        return None
    theirs = dict(other.round_tps)
    ratios = [tps / theirs[r] for r, tps in cell.round_tps if theirs.get(r)]
    return (min(ratios), max(ratios)) if len(ratios) >= 2 else None


def _ratios(cell: Cell, by_key: dict[tuple[str, int, str], Cell]) -> list[str]:
    """pgmux/PgBouncer (with its spread over rounds) and pgmux/direct, on pgmux's rows only."""
    if cell.target != PGMUX:
        return ["", "", ""]
    bouncer, direct = (by_key.get((cell.workload, cell.clients, t)) for t in (PGBOUNCER, DIRECT))
    spread = round_ratio_range(cell, bouncer)
    return [
        _fmt(ratio(cell.tps, bouncer.tps if bouncer else None), ".2f"),
        "" if spread is None else f"{spread[0]:.2f}..{spread[1]:.2f}",
        _fmt(ratio(cell.tps, direct.tps if direct else None), ".2f"),
    ]


MAIN_HEADERS = (
    "workload", "clients", "target", "tps", "lat avg ms", "lat p99 ms", "failed",
    "pooler CPU s", "CPU µs/txn", "pgmux/pgbouncer", "by round", "pgmux/direct",
)  # fmt: skip


def main_rows(cells: Sequence[Cell], not_run: Sequence[NotRun]) -> list[list[str]]:
    """One row per cell; after a workload's cells, an n/a row per target it was not run on."""
    by_key = {(c.workload, c.clients, c.target): c for c in cells}
    rows: list[list[str]] = []
    for workload in dict.fromkeys(c.workload for c in cells):
        rows += [_cell_row(c, by_key) for c in cells if c.workload == workload]
        rows += [
            [workload, "", gap.target, "n/a", *[""] * (len(MAIN_HEADERS) - 4)]
            for gap in not_run
            if gap.workload == workload
        ]
    return rows


def _cell_row(c: Cell, by_key: dict[tuple[str, int, str], Cell]) -> list[str]:
    return [
        c.workload, str(c.clients), c.target, _fmt(c.tps, ".0f"), _fmt(c.latency_ms, ".3f"),
        _fmt(c.p99_ms, ".3f"), str(c.failed), _fmt(c.pooler_cpu_s, ".2f"),
        _fmt(c.cpu_us_per_transaction, ".1f"), *_ratios(c, by_key),
    ]  # fmt: skip


IDLE_HEADERS = (
    "target", "connections", "opened", "RSS before MB", "RSS idle MB", "KB per conn",
    "pgmux/pgbouncer",
)  # fmt: skip


def idle_rows(cells: Sequence[IdleCell]) -> list[list[str]]:
    per_conn = {(c.clients, c.target): c.per_conn_kb for c in cells}
    rows = []
    for c in cells:
        versus = ratio(c.per_conn_kb, per_conn.get((c.clients, PGBOUNCER)))
        rows.append([
            c.target, str(c.clients), str(c.opened), f"{c.rss_before_kb / 1024:.1f}",
            f"{c.rss_after_kb / 1024:.1f}", _fmt(c.per_conn_kb, ".1f"),
            _fmt(versus, ".2f") if c.target == PGMUX else "",
        ])  # fmt: skip
    return rows


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """Columns padded to width; numbers right-aligned. Markdown gets pipes and a rule."""
    widths = [max(len(str(x)) for x in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = [
            c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(cells, widths, strict=True)
        ]
        return "| " + " | ".join(padded) + " |" if markdown else "  ".join(padded).rstrip()

    rule = ["-" * w for w in widths]
    return "\n".join([line(headers), line(rule), *(line(r) for r in rows)])


def _numeric(text: str) -> bool:
    """Right-align numbers and the placeholders that stand for them."""
    if text in ("-", "n/a"):
        return True
    try:
        float(text)
    except ValueError:
        return False
    return True


def added_latency_lines(added: AddedLatency | None) -> list[str]:
    if added is None:
        return ["Added latency at 1 client: not measured (needs `select` at 1 client with direct)."]
    lines = [f"Added latency at 1 client (select, mean; direct {added.direct_ms:.3f} ms):"]
    for name, value in (("pgmux", added.pgmux_ms), ("PgBouncer", added.pgbouncer_ms)):
        if value is not None:
            lines.append(f"  {name:<16}{value:+.3f} ms")
    if added.ratio is not None:
        lines.append(f"  pgmux/PgBouncer {added.ratio:.2f}")
    return lines


def error_lines(report: Report) -> list[str]:
    """Runs that could not be carried out or had failures, and what pgbench said first."""
    lines = [
        f"{r.workload} c={r.clients} {r.target} round {r.round} failed: {r.error}"
        for r in report.idle_runs
        if r.error
    ]
    for run in report.runs:
        where = f"{run.workload} c={run.clients} {run.target} round {run.round}"
        if run.error:
            lines.append(f"{where} failed: {run.error}")
        elif run.first_failure:
            lines.append(f"{where}: {run.failed} failures, first: {run.first_failure}")
    return lines


def render(report: Report, markdown: bool = False) -> str:
    """The whole report as text (for stdout) or Markdown (results.md)."""
    cells = pgbench_cells(report.runs)
    out: list[str] = ["# pgmux benchmark results", ""] if markdown else []
    rows = main_rows(cells, report.not_run)
    if rows:
        out += [format_table(MAIN_HEADERS, rows, markdown), ""]
    idle = idle_cells(report.idle_runs)
    if idle:
        out += ["Idle connections (pooler resident memory):", ""] if markdown else ["Idle:"]
        out += [format_table(IDLE_HEADERS, idle_rows(idle), markdown), ""]
    if any(c.workload == "select" for c in cells):
        lines = added_latency_lines(added_latency(cells))
        out += [*(["```", *lines, "```"] if markdown else lines), ""]
    bullet = "- " if markdown else ""
    out += [f"{bullet}{g.workload} on {g.target}: not run: {g.reason}" for g in report.not_run]
    out += [f"{bullet}{line}" for line in [*error_lines(report), *report.notes]]
    return "\n".join(out).rstrip() + "\n"


def to_json(report: Report) -> dict[str, Any]:
    """results.json: the raw runs and the medians computed from them."""
    cells = pgbench_cells(report.runs)
    added = added_latency(cells)
    return {
        "meta": report.meta,
        "cells": _dicts(cells),
        "idle": _dicts(idle_cells(report.idle_runs)),
        "added_latency_1_client": None if added is None else asdict(added) | {"ratio": added.ratio},
        "not_run": _dicts(report.not_run),
        "notes": report.notes,
        "runs": _dicts(report.runs),
        "idle_runs": [asdict(r) | {"per_conn_kb": r.per_conn_kb} for r in report.idle_runs],
    }


def _dicts(items: Iterable[Any]) -> list[dict[str, Any]]:
    return [asdict(item) for item in items]
