"""`pgmux bench`: run the workloads against direct PostgreSQL, PgBouncer and pgmux, interleaved.

Each workload gets fresh poolers from one generated pgbouncer.ini. Within a round every
(client count, target) cell runs once, targets taking turns (A B C, then B C A in the next
round ...) so that a machine's drift hits all targets alike; the report takes medians over
rounds. Everything started is stopped and every temporary file removed on the way out,
Ctrl-C and SIGTERM included. The exit status is 0 unless something failed to start or died.
"""

from __future__ import annotations

import os
import resource
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from pgmux.bench.database import PASSWORD, Database, bench_database, client_env
from pgmux.bench.idle import Credentials, hold_idle
from pgmux.bench.options import BenchOptions
from pgmux.bench.pgbench import (
    EXIT_COULD_NOT_START,
    PgbenchSummary,
    count_failures,
    error_line,
    p99_from_logs,
    parse_summary,
    pgbench_argv,
    retry_duration,
    run_duration,
)
from pgmux.bench.progress import Progress
from pgmux.bench.report import NotRun, Report
from pgmux.bench.results import IdleResult, RunResult
from pgmux.bench.targets import (
    DIRECT,
    PGBOUNCER,
    Pooler,
    PoolSettings,
    make_run_dir,
    pgmux_command,
    render_ini,
    start_pooler,
    write_pgbouncer_inis,
)
from pgmux.bench.workloads import Workload, unsupported_reason
from pgmux.testing import free_port
from pgmux.testing.pooler import render_userlist

FD_MARGIN = 1000  # descriptors beyond the client connections: logs, pgbench threads, slack
# Seconds a pooler's memory is left to settle (workers forked, crowd logged in) before a reading.
SETTLE_S = 1.0


@dataclass(frozen=True)
class Endpoint:
    """Where pgbench connects for one target, and the pooler process behind it if any."""

    target: str
    host: str
    port: int
    pooler: Pooler | None


@dataclass
class Session:
    """Everything a workload needs while the benchmark runs."""

    opts: BenchOptions
    db: Database
    work: Path
    progress: Progress
    report: Report
    pgbouncer: str | None
    pgbouncer_version: tuple[int, ...] | None


def rotated(targets: tuple[str, ...], round_no: int) -> tuple[str, ...]:
    """The targets in this round's order: each round starts one further along."""
    shift = (round_no - 1) % len(targets)
    return targets[shift:] + targets[:shift]


def applicable(
    workload: Workload, targets: tuple[str, ...], version: tuple[int, ...] | None
) -> tuple[tuple[str, ...], list[NotRun]]:
    """The targets that run `workload`, and why the others do not."""
    runs, gaps = [], []
    for target in targets:
        reason = unsupported_reason(workload, target, version)
        if reason is None:
            runs.append(target)
        else:
            gaps.append(NotRun(workload.name, target, reason))
    return tuple(runs), gaps


def total_steps(
    opts: BenchOptions, targets: tuple[str, ...], version: tuple[int, ...] | None
) -> int:
    return sum(
        opts.rounds * len(opts.client_counts(w)) * len(applicable(w, targets, version)[0])
        for w in opts.workloads
    )


def max_connections(opts: BenchOptions) -> int:
    """Enough for the most clients any direct run opens, plus every pooler's server pool."""
    direct = [max(opts.client_counts(w)) for w in opts.workloads if DIRECT not in w.unsupported]
    pools = opts.pool_size * 2 * opts.workers  # each pooler's, both per process
    return max(100, max(direct, default=0) + pools + 10)


def max_client_conn(opts: BenchOptions) -> int:
    return max(1000, *(max(opts.client_counts(w)) + 100 for w in opts.workloads))


def raise_file_limit(needed: int) -> str | None:
    """Allow `needed` open files here and in every child; a message if that is not possible."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, max(hard, needed)))
        return None
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        return f"open-file limit is {hard}, below the {needed} wanted: idle may open fewer"


@contextmanager
def endpoint(session: Session, workload: Workload, target: str) -> Iterator[Endpoint]:
    """Direct PostgreSQL, or a pooler started for `workload` and stopped afterwards."""
    db = session.db
    if target == DIRECT:
        yield Endpoint(target, db.host, db.port, None)
        return
    run_dir = make_run_dir(session.work, workload.name)
    pool = PoolSettings(
        pg_host=db.host, pg_port=db.port, dbname=db.dbname, auth_type=workload.auth_type,
        auth_file=session.work / "userlist.txt", pool_size=session.opts.pool_size,
        max_client_conn=max_client_conn(session.opts), socket_dir=run_dir,
    )  # fmt: skip
    port = free_port()
    workers = session.opts.workers
    if target == PGBOUNCER:
        assert session.pgbouncer is not None
        inis = write_pgbouncer_inis(pool, port=port, run_dir=run_dir, workers=workers)
        argvs = [[session.pgbouncer, str(ini)] for ini in inis]
        pooler = start_pooler(target, argvs, port=port, run_dir=run_dir)
    else:
        ini = run_dir / f"{target}.ini"
        ini.write_text(render_ini(pool, name=target, port=port, run_dir=run_dir, workers=workers))
        argv, env = pgmux_command(ini)
        pooler = start_pooler(target, [argv], port=port, run_dir=run_dir, env=env)
    try:
        yield Endpoint(target, "127.0.0.1", port, pooler)
    finally:
        pooler.stop()


def measure(
    session: Session, workload: Workload, ep: Endpoint, clients: int, round_no: int
) -> RunResult:
    """One timed pgbench run against `ep`, run again longer if connecting ate most of it."""
    seconds = session.opts.seconds
    duration = run_duration(seconds, clients)
    while True:
        done, summary, p99, cpu = _timed_run(session, workload, ep, clients, duration)
        longer = retry_duration(summary, duration, seconds) if done.returncode == 0 else None
        if longer is None or longer <= duration:
            break
        session.progress.note(
            f"{workload.name} c={clients} {ep.target}: connecting left too little of {duration} s;"
            f" running again for {longer} s"
        )
        duration = longer
    failed = count_failures(summary, done.returncode)
    message = error_line(done.stderr) if failed else None
    return RunResult(
        workload.name, ep.target, clients, round_no, summary.tps, summary.latency_ms, p99,
        failed, cpu, message if done.returncode == EXIT_COULD_NOT_START else None, message,
        summary.transactions,
    )  # fmt: skip


def _timed_run(
    session: Session, workload: Workload, ep: Endpoint, clients: int, duration: int
) -> tuple[subprocess.CompletedProcess[str], PgbenchSummary, float | None, float | None]:
    """pgbench for `duration` seconds: its output, summary, p99 ms and the pooler's CPU s."""
    log_dir = Path(tempfile.mkdtemp(prefix="pgbench-log-", dir=session.work))
    try:
        argv = pgbench_argv(
            session.db.pgbench, host=ep.host, port=ep.port,
            user=session.db.user_for(workload.auth_type), dbname=session.db.dbname,
            clients=clients, duration=duration, threads=min(clients, os.cpu_count() or 1),
            workload_args=_workload_args(session, workload), log_prefix=log_dir / "tx",
        )  # fmt: skip
        cpu_before = ep.pooler.cpu_seconds() if ep.pooler else 0.0
        done = _run_pgbench(argv, duration)
        cpu = ep.pooler.cpu_seconds() - cpu_before if ep.pooler else None
        if ep.pooler:
            ep.pooler.check_alive()
        return done, parse_summary(done.stdout, done.stderr), p99_from_logs(log_dir), cpu
    finally:
        shutil.rmtree(log_dir, ignore_errors=True)


def _workload_args(session: Session, workload: Workload) -> list[str]:
    if workload.script is None:
        return list(workload.pgbench_args)
    script = session.work / f"{workload.name}.sql"
    script.write_text(workload.script)
    return [*workload.pgbench_args, "-f", str(script)]


def _run_pgbench(argv: list[str], seconds: int) -> subprocess.CompletedProcess[str]:
    """Run pgbench for its -T `seconds`; one that hangs far past that is killed and reported."""
    timeout = 3 * seconds + 120
    try:
        return subprocess.run(
            argv, capture_output=True, text=True, env=client_env(), timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        message = f"pgbench: error: did not finish within {timeout} s and was killed"
        return subprocess.CompletedProcess(argv, EXIT_COULD_NOT_START, "", message)


def run_pgbench_workload(session: Session, workload: Workload, targets: tuple[str, ...]) -> None:
    """All rounds of one pgbench workload; poolers stay up for the whole workload."""
    with ExitStack() as stack:
        endpoints = {t: stack.enter_context(endpoint(session, workload, t)) for t in targets}
        for round_no in range(1, session.opts.rounds + 1):
            for clients in session.opts.client_counts(workload):
                for target in rotated(targets, round_no):
                    session.progress.start(f"{workload.name} c={clients} {target} round {round_no}")
                    run = measure(session, workload, endpoints[target], clients, round_no)
                    session.report.runs.append(run)
                    session.progress.advance()


def run_idle_workload(session: Session, workload: Workload, targets: tuple[str, ...]) -> None:
    """All rounds of `idle`; each measurement gets a freshly started pooler, so that memory a
    previous crowd left behind cannot hide what the next one costs."""
    user = session.db.user_for(workload.auth_type)
    for round_no in range(1, session.opts.rounds + 1):
        for clients in session.opts.client_counts(workload):
            for target in rotated(targets, round_no):
                session.progress.start(f"{workload.name} c={clients} {target} round {round_no}")
                with endpoint(session, workload, target) as ep:
                    assert ep.pooler is not None
                    time.sleep(SETTLE_S)
                    before = ep.pooler.rss_kb()
                    creds = Credentials(ep.host, ep.port, user, PASSWORD, session.db.dbname)
                    opened, after, error = hold_idle(creds, clients, ep.pooler.rss_kb, SETTLE_S)
                    ep.pooler.check_alive()
                session.report.idle_runs.append(IdleResult(
                    workload.name, target, clients, round_no, opened, before, after, error
                ))  # fmt: skip
                session.progress.advance()


def run_workloads(session: Session, targets: tuple[str, ...]) -> None:
    for workload in session.opts.workloads:
        runs_on, gaps = applicable(workload, targets, session.pgbouncer_version)
        session.report.not_run.extend(gaps)
        if not runs_on:
            continue
        if workload.kind == "idle":
            run_idle_workload(session, workload, runs_on)
        else:
            run_pgbench_workload(session, workload, runs_on)


def benchmark(
    opts: BenchOptions,
    targets: tuple[str, ...],
    report: Report,
    pgbouncer: str | None,
    version: tuple[int, ...] | None,
) -> None:
    """Set up the database, run every workload, and tear it all down again."""
    progress = Progress(total_steps(opts, targets, version))
    with ExitStack() as stack:
        work = Path(tempfile.mkdtemp(prefix="pgmux-bench-"))
        stack.callback(shutil.rmtree, work, ignore_errors=True)
        os.chmod(work, 0o755)  # PgBouncer, run as postgres, reads the auth_file in here
        progress.note(f"starting PostgreSQL and running pgbench -i -s {opts.scale} ...")
        db = stack.enter_context(bench_database(max_connections(opts), opts.scale))
        (work / "userlist.txt").write_text(render_userlist(db.secrets))
        session = Session(opts, db, work, progress, report, pgbouncer, version)
        try:
            run_workloads(session, targets)
        finally:
            progress.clear()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Let SIGTERM unwind like Ctrl-C, so that the same clean-up runs."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
