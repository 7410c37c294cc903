"""The `pgmux bench` command: options in; a table on stdout and results.json, results.md and
tps.png in --out. Exit status: 0 when every target started and ran, 1 when something failed to
start or died (the report is still written when it got that far), 130 when interrupted.
"""

from __future__ import annotations

import json
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pgmux.bench.chart import write_tps_chart
from pgmux.bench.options import BenchOptions, parse_args
from pgmux.bench.report import Report, pgbench_cells, render, to_json
from pgmux.bench.runner import (
    FD_MARGIN,
    benchmark,
    max_client_conn,
    raise_file_limit,
    sigterm_as_interrupt,
)
from pgmux.bench.targets import (
    PGBOUNCER,
    PGMUX,
    BenchError,
    find_pgbouncer,
    pgbouncer_version,
    pooler_os_user,
)


def main(argv: list[str]) -> int:
    """Entry point of `pgmux bench ARGS...`."""
    opts = parse_args(argv)
    try:
        with sigterm_as_interrupt():
            return run(opts)
    except BenchError as exc:
        print(f"pgmux bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\npgmux bench: interrupted; what it started was stopped", file=sys.stderr)
        return 130


def run(opts: BenchOptions) -> int:
    targets, pgbouncer, notes = resolve_targets(opts)
    for note in notes:
        print(note, file=sys.stderr)
    version = pgbouncer_version(pgbouncer) if pgbouncer else None
    limit_note = raise_file_limit(max_client_conn(opts) + FD_MARGIN)
    notes += [limit_note] if limit_note else []
    report = Report(meta=describe(opts, targets, version), notes=notes + user_notes(targets))
    benchmark(opts, targets, report, pgbouncer, version)
    print(render(report), end="")
    for line in write_outputs(report, opts.out):
        print(line, file=sys.stderr)
    failed = any(r.error for r in report.runs) or any(r.error for r in report.idle_runs)
    return 1 if failed else 0


def resolve_targets(opts: BenchOptions) -> tuple[tuple[str, ...], str | None, list[str]]:
    """The targets to measure, the pgbouncer binary if it is one of them, and why one was left
    out."""
    if PGBOUNCER not in opts.targets:
        return opts.targets, None, []
    binary = find_pgbouncer()
    if binary is not None:
        return opts.targets, binary, []
    note = (
        "PgBouncer is not installed: its columns are skipped; "
        "`apt-get install -y pgbouncer` enables them."
    )
    return tuple(t for t in opts.targets if t != PGBOUNCER), None, [note]


def user_notes(targets: tuple[str, ...]) -> list[str]:
    """Say which OS user each pooler ran as when they differ."""
    if PGBOUNCER in targets and PGMUX in targets and pooler_os_user(PGBOUNCER):
        return [
            "PgBouncer ran as OS user postgres (it refuses root), pgmux as the invoking user; "
            "the OS user does not change either one's speed."
        ]
    return []


def describe(
    opts: BenchOptions, targets: tuple[str, ...], version: tuple[int, ...] | None
) -> dict[str, Any]:
    """The machine and settings a result came from, for results.json."""
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "pgbouncer_version": ".".join(map(str, version)) if version else None,
        "targets": list(targets),
        "workloads": [w.name for w in opts.workloads],
        "rounds": opts.rounds,
        "seconds": opts.seconds,
        "clients": list(opts.clients) if opts.clients else None,
        "pool_size": opts.pool_size,
        "workers": opts.workers,
        "scale": opts.scale,
    }


def write_outputs(report: Report, out: Path) -> list[str]:
    """Write results.json, results.md and tps.png; return what to tell the user."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(to_json(report), indent=2) + "\n")
    (out / "results.md").write_text(render(report, markdown=True))
    chart = write_tps_chart(pgbench_cells(report.runs), out / "tps.png")
    return [f"wrote {out / 'results.json'} and {out / 'results.md'}", chart]
