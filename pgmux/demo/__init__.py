"""``pgmux demo``: the same Django project under the same load, five ways to reach PostgreSQL.

It starts a throwaway PostgreSQL with a low ``max_connections``, migrates and seeds the example
project (examples/djangoapp) and, for each set-up in turn, serves it with gunicorn (several
workers, several threads each) and drives HTTP load at it from many concurrent clients for
``--seconds``: direct with ``CONN_MAX_AGE=0`` and ``=60``, Django's native pool, and pgmux in
transaction mode with ``CONN_MAX_AGE=0`` and ``=60``. For each it reports requests/s, latency,
errors (with the first error's text), the peak number of PostgreSQL connections and how many
connections PostgreSQL had to open per second; then a table, ``demo.json`` and ``demo.png``.

Everything it starts is stopped on the way out, also on Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from pgmux.bench.progress import bar
from pgmux.demo.load import LoadResult, run_load
from pgmux.demo.report import Row, render_table, write_chart, write_json
from pgmux.demo.sampler import Sampler
from pgmux.demo.setups import SETUPS, Setup
from pgmux.demo.stack import APP_DB, Stack, find_project

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgmux demo",
        description="The same Django project under the same HTTP load, five ways to reach "
        "PostgreSQL: direct (CONN_MAX_AGE 0 and 60), Django's native pool, and pgmux (CONN_MAX_AGE "
        "0 and 60). See docs/django.md.",
    )
    parser.add_argument("--seconds", type=float, default=15, help="load time per set-up (15)")
    parser.add_argument("--clients", type=int, default=160, help="concurrent HTTP clients (160)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (4)")
    parser.add_argument("--threads", type=int, default=16, help="threads per worker (16)")
    parser.add_argument(
        "--max-connections", type=int, default=30, help="PostgreSQL max_connections (30)"
    )
    parser.add_argument(
        "--pool-size",
        type=int,
        default=10,
        help="pgmux default_pool_size: server connections it may open (10)",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=[s.key for s in SETUPS],
        help="run only this set-up (repeatable)",
    )
    parser.add_argument(
        "--out", default="demo-results", help="directory for demo.json and demo.png (demo-results)"
    )
    parser.add_argument("--project", help="the Django project (default: examples/djangoapp)")
    return parser


def _sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwinds through the same cleanup as Ctrl-C


def main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    project = find_project(args.project)
    setups = [s for s in SETUPS if not args.only or s.key in args.only]
    previous = signal.signal(signal.SIGTERM, _sigterm)
    stack = Stack(project, max_connections=args.max_connections, pool_size=args.pool_size)
    try:
        rows = _run(args, stack, setups)
    except KeyboardInterrupt:
        print("\npgmux demo: interrupted; stopping everything it started", file=sys.stderr)
        return 130
    finally:
        stack.close()
        signal.signal(signal.SIGTERM, previous)
    _finish(args, rows)
    return 0


def _run(args: argparse.Namespace, stack: Stack, setups: list[Setup]) -> list[Row]:
    print(
        f"pgmux demo: PostgreSQL with max_connections={args.max_connections}; gunicorn with "
        f"{args.workers} workers x {args.threads} threads; {args.clients} HTTP clients for "
        f"{args.seconds:g} s per set-up; pgmux pool_size={args.pool_size} (transaction mode)"
    )
    cluster = stack.start_postgres()
    direct = {"DJANGOAPP_MODE": "direct", "DJANGOAPP_DATABASE_URL": stack.direct_url()}
    stack.manage("migrate", "--verbosity", "0", env=direct)
    print(stack.manage("seed", env=direct).strip())
    sampler = Sampler(cluster.dsn(), APP_DB, cluster.log_file)
    try:
        return [_one(args, stack, sampler, setup) for setup in setups]
    finally:
        sampler.close()


def _one(args: argparse.Namespace, stack: Stack, sampler: Sampler, setup: Setup) -> Row:
    url = stack.direct_url()
    if setup.via_pgmux:
        stack.start_pgmux()
        url = stack.pgmux_url()
    try:
        port = stack.start_app(setup.env(url), workers=args.workers, threads=args.threads)
        sampler.start()
        load = asyncio.run(
            run_load(
                "127.0.0.1",
                port,
                clients=args.clients,
                seconds=args.seconds,
                on_tick=_ticker(setup, args.seconds),
            )
        )
        peak, opened, refused = sampler.stop()
    finally:
        stack.stop_app()
        stack.stop_pgmux()
    _clear_line()
    row = Row.build(
        setup.key,
        setup.title,
        load,
        peak,
        opened,
        refused,
        load_seconds=args.seconds,
        pool_size=args.pool_size if setup.via_pgmux else None,
    )
    print(
        f"{setup.title}: {row.requests_per_s} req/s, p50 {row.p50_ms} ms, p99 {row.p99_ms} ms,"
        f" {row.errors} errors of {row.requests}; PostgreSQL: peak {peak} connections, "
        f"{row.pg_connections_per_s} opened/s, {refused} refused"
    )
    return row


def _ticker(setup: Setup, seconds: float) -> Callable[[float, LoadResult], None]:
    interactive = sys.stderr.isatty()
    last = [0.0]

    def tick(elapsed: float, so_far: LoadResult) -> None:
        line = (
            f"{bar(int(min(elapsed, seconds) * 10), int(seconds * 10))} "
            f"{min(elapsed, seconds):4.1f}/{seconds:g} s  {setup.title}: "
            f"{so_far.ok} ok, {so_far.errors} errors"
        )
        if interactive:
            sys.stderr.write("\r" + line.ljust(100))
            sys.stderr.flush()
        elif elapsed - last[0] >= 5 or elapsed >= seconds:
            last[0] = elapsed
            print(line, file=sys.stderr, flush=True)

    return tick


def _clear_line() -> None:
    if sys.stderr.isatty():
        sys.stderr.write("\r" + " " * 100 + "\r")
        sys.stderr.flush()


def _finish(args: argparse.Namespace, rows: list[Row]) -> None:
    print()
    print(render_table(rows))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    settings: dict[str, object] = {
        key: getattr(args, key)
        for key in ("seconds", "clients", "workers", "threads", "max_connections", "pool_size")
    }
    settings["finished"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    write_json(rows, settings, out / "demo.json")
    print(f"wrote {out / 'demo.json'}")
    print(write_chart(rows, args.max_connections, out / "demo.png"))
    for row in rows:
        if row.via_pgmux:
            print(
                f"{row.title}: {row.errors} errors; PostgreSQL saw at most "
                f"{row.peak_pg_connections} connections (pool_size {row.pool_size})."
            )
        elif row.errors:
            print(
                f"{row.title}: {row.errors} of {row.requests} requests failed, e.g. "
                f"{row.first_error[:120]}"
            )
