"""The command line of `pgmux bench`, parsed into one immutable BenchOptions."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from pgmux.bench.targets import PGBOUNCER, TARGETS
from pgmux.bench.workloads import WORKLOAD_NAMES, Workload, select_workloads


@dataclass(frozen=True)
class BenchOptions:
    workloads: tuple[Workload, ...]
    rounds: int
    seconds: int
    clients: tuple[int, ...] | None
    pool_size: int
    workers: int
    out: Path
    targets: tuple[str, ...]
    scale: int

    def client_counts(self, workload: Workload) -> tuple[int, ...]:
        return self.clients if self.clients is not None else workload.clients


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgmux bench",
        description="Benchmark pgmux against PgBouncer and direct PostgreSQL with pgbench.",
    )
    add = parser.add_argument
    add(
        "--workload",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help=f"workload(s) to run, repeatable; default all of: {', '.join(WORKLOAD_NAMES)}",
    )
    add("--rounds", type=_positive, default=3, help="interleaved rounds per cell (default 3)")
    add("--seconds", type=_positive, default=10, help="duration of one pgbench run (default 10)")
    add(
        "--clients",
        action="append",
        default=[],
        metavar="N[,N]",
        help="client counts for every workload, instead of each workload's own",
    )
    add("--pool-size", type=_positive, default=20, help="default_pool_size (default 20)")
    add(
        "--workers",
        type=_positive,
        default=1,
        help="pgmux worker processes, and as many PgBouncer processes on the port (default 1)",
    )
    add(
        "--out",
        type=Path,
        default=Path("bench-results"),
        help="directory for results.json, results.md, tps.png (default ./bench-results)",
    )
    add(
        "--targets",
        default=",".join(TARGETS),
        metavar="T[,T]",
        help=f"targets to measure (default {','.join(TARGETS)})",
    )
    add("--no-pgbouncer", action="store_true", help="leave PgBouncer out")
    add("--scale", type=_positive, default=10, help="pgbench -i scale factor (default 10)")
    return parser  # fmt: skip


def parse_args(argv: list[str]) -> BenchOptions:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        workloads = select_workloads(_split(args.workload))
        clients = tuple(sorted({_positive(c) for c in _split(args.clients)})) or None
        targets = _targets(args.targets, args.no_pgbouncer)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(str(exc))
    return BenchOptions(
        workloads=tuple(workloads),
        rounds=args.rounds,
        seconds=args.seconds,
        clients=clients,
        pool_size=args.pool_size,
        workers=args.workers,
        out=args.out,
        targets=targets,
        scale=args.scale,
    )


def _targets(spec: str, no_pgbouncer: bool) -> tuple[str, ...]:
    wanted = set(_split([spec]))
    unknown = wanted - set(TARGETS)
    if unknown:
        raise ValueError(f"unknown target(s): {', '.join(sorted(unknown))}; "
                         f"choose from {', '.join(TARGETS)}")  # fmt: skip
    if no_pgbouncer:
        wanted.discard(PGBOUNCER)
    if not wanted:
        raise ValueError("no target left to measure")
    return tuple(t for t in TARGETS if t in wanted)


def _split(values: list[str]) -> list[str]:
    """Repeatable options that also take comma lists: ["a,b", "c"] -> ["a", "b", "c"]."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value
