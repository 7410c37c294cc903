"""The poolers under test, PgBouncer and pgmux, started from one generated pgbouncer.ini.

Both poolers read the same settings; their two copies differ only in listen_port, pidfile and
logfile, plus pgmux's own `workers` key, which PgBouncer rejects as unknown. PgBouncer's way to
use N cores is N processes sharing the port with `so_reuseport = 1`, so `workers = N` becomes N
PgBouncer processes, each with its own pidfile, logfile and unix_socket_dir. A pooler is ready
when its port accepts TCP connections and each of its processes listens; if one exits first,
the error carries the logs' tails. PgBouncer refuses to run as root, so under root it runs as
the `postgres` OS user.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from pgmux.bench import procstat
from pgmux.testing import pooler as testing_pooler

DIRECT = "direct"
PGBOUNCER = "pgbouncer"
PGMUX = "pgmux"
TARGETS = (DIRECT, PGBOUNCER, PGMUX)

LISTEN_ADDR = "127.0.0.1"
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


class BenchError(Exception):
    """Something the benchmark needs could not be started, or died while in use."""


@dataclass(frozen=True)
class PoolSettings:
    """What both poolers' configuration holds."""

    pg_host: str
    pg_port: int
    dbname: str
    auth_type: str
    auth_file: Path
    pool_size: int
    max_client_conn: int
    socket_dir: Path


def shared_settings(pool: PoolSettings) -> dict[str, str]:
    """The [pgbouncer] section both poolers share."""
    return {
        "listen_addr": LISTEN_ADDR,
        "unix_socket_dir": str(pool.socket_dir),
        "auth_type": pool.auth_type,
        "auth_file": str(pool.auth_file),
        "pool_mode": "transaction",
        "default_pool_size": str(pool.pool_size),
        "max_client_conn": str(pool.max_client_conn),
        # Logging every login would spend the poolers' CPU in the connect workloads.
        "log_connections": "0",
        "log_disconnections": "0",
    }


def process_name(name: str, processes: int, process: int) -> str:
    """What the files of process number `process` (from 0) of `processes` are called."""
    return f"{name}-{process}" if processes > 1 else name


def render_ini(
    pool: PoolSettings, *, name: str, port: int, run_dir: Path, workers: int, process: int = 0
) -> str:
    """The pgbouncer.ini copy for pooler `name` listening on `port`.

    For PgBouncer with `workers > 1`, the copy for its process number `process` (from 0).
    """
    own = process_name(name, workers if name == PGBOUNCER else 1, process)
    settings = shared_settings(pool) | {
        "listen_port": str(port),
        "pidfile": str(run_dir / f"{own}.pid"),
        "logfile": str(run_dir / f"{own}.log"),
    }
    if name == PGMUX:
        settings["workers"] = str(workers)
    elif workers > 1:
        # Each process binds its own socket to the port; the kernel spreads the clients.
        settings["so_reuseport"] = "1"
        settings["unix_socket_dir"] = str(pool.socket_dir / own)
    database = f"host={pool.pg_host} port={pool.pg_port} dbname={pool.dbname}"
    return testing_pooler.render_ini({pool.dbname: database}, settings)


def write_pgbouncer_inis(
    pool: PoolSettings, *, port: int, run_dir: Path, workers: int
) -> list[Path]:
    """One ini per PgBouncer process (`workers` of them), each with its unix_socket_dir made."""
    inis = []
    for number in range(workers):
        own = process_name(PGBOUNCER, workers, number)
        if workers > 1:
            make_run_dir(pool.socket_dir, own)
        ini = run_dir / f"{own}.ini"
        text = render_ini(
            pool, name=PGBOUNCER, port=port, run_dir=run_dir, workers=workers, process=number
        )
        ini.write_text(text)
        inis.append(ini)
    return inis


def make_run_dir(parent: Path, name: str) -> Path:
    """A directory for one pooler session that PgBouncer, run as postgres, can write to."""
    path = parent / name
    path.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        account = pwd.getpwnam("postgres")
        os.chown(path, account.pw_uid, account.pw_gid)
    return path


def find_pgbouncer() -> str | None:
    """The pgbouncer binary; Debian puts it in /usr/sbin, which a user's PATH may lack."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin"])
    return shutil.which("pgbouncer", path=path)


def pgbouncer_version(binary: str) -> tuple[int, ...] | None:
    """(1, 18, 0) from `pgbouncer --version`, None if it says nothing recognizable."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, check=False)
    match = re.search(r"PgBouncer (\d+(?:\.\d+)*)", out.stdout + out.stderr)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def pgmux_command(ini: Path) -> tuple[list[str], dict[str, str]]:
    """argv and environment that run this checkout's pgmux on `ini`."""
    import pgmux

    source_root = str(Path(pgmux.__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [source_root, env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "pgmux", "run", str(ini)], env


def pooler_os_user(name: str) -> str | None:
    """The OS user a pooler runs as; None = the invoking user.

    pgmux stays with the invoking user: its interpreter may live where `postgres` cannot read
    it (pyenv under /root). The OS user does not change either pooler's speed.
    """
    return "postgres" if name == PGBOUNCER and os.geteuid() == 0 else None


@dataclass
class Pooler:
    """A running pooler, one process or several on one port, and the files that tell why it
    failed. Its CPU and memory are summed over its processes (and whatever they fork)."""

    name: str
    port: int
    processes: tuple[subprocess.Popen[bytes], ...]
    logs: tuple[Path, ...]

    def cpu_seconds(self) -> float:
        return sum(procstat.cpu_seconds(p.pid) for p in self.processes)

    def rss_kb(self) -> int:
        return sum(procstat.rss_kb(p.pid) for p in self.processes)

    def exit_status(self) -> int | None:
        """The status of a process that has exited, or None while all of them run."""
        for process in self.processes:
            status = process.poll()
            if status is not None:
                return status
        return None

    def check_alive(self) -> None:
        status = self.exit_status()
        if status is not None:
            raise BenchError(
                f"{self.name} exited with status {status} during the benchmark\n"
                + log_tail(self.logs)
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL for any process not gone within STOP_TIMEOUT_S."""
        running = [p for p in self.processes if p.poll() is None]
        for process in running:
            process.send_signal(signal.SIGTERM)
        for process in running:
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def start_pooler(
    name: str,
    argvs: Sequence[Sequence[str]],
    *,
    port: int,
    run_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Pooler:
    """Start a pooler's processes, one per argv, each in its own session (a terminal's Ctrl-C
    reaches only the bench, which then stops them), and wait until all of them listen."""
    pooler = Pooler(name, port, (), ())
    try:
        for number, argv in enumerate(argvs):
            own = process_name(name, len(argvs), number)
            process = _spawn(argv, run_dir / f"{own}.out", run_dir, env, pooler_os_user(name))
            pooler.processes += (process,)
            pooler.logs += (run_dir / f"{own}.out", run_dir / f"{own}.log")
        wait_for_port(pooler)
    except BaseException:
        pooler.stop()  # the processes started so far
        raise
    return pooler


def _spawn(
    argv: Sequence[str],
    out_path: Path,
    run_dir: Path,
    env: Mapping[str, str] | None,
    user: str | None,
) -> subprocess.Popen[bytes]:
    """One pooler process in its own session, its output to `out_path`, as `user` if given."""
    with out_path.open("wb") as out:
        return subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=run_dir,
            env=env,
            start_new_session=True,
            user=user,
            group=pwd.getpwnam(user).pw_gid if user else None,
            extra_groups=[] if user else None,
        )


def wait_for_port(pooler: Pooler, timeout: float = READY_TIMEOUT_S) -> None:
    """Return once `pooler` accepts TCP connections and has a listening socket per process;
    raise BenchError if a process exits or the wait times out."""
    deadline = time.monotonic() + timeout
    while True:
        status = pooler.exit_status()
        if status is not None:
            raise BenchError(
                f"{pooler.name} exited with status {status} before accepting connections "
                f"on port {pooler.port}\n" + log_tail(pooler.logs)
            )
        if _accepts(pooler.port) and (
            len(pooler.processes) == 1 or listening_sockets(pooler.port) >= len(pooler.processes)
        ):
            return
        if time.monotonic() > deadline:
            raise BenchError(
                f"{pooler.name} did not accept connections on port {pooler.port} "
                f"within {timeout:.0f} s\n" + log_tail(pooler.logs)
            )
        time.sleep(0.05)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection((LISTEN_ADDR, port), timeout=0.5):
            return True
    except OSError:
        return False


TCP_LISTEN = "0A"  # the state column of /proc/net/tcp for a listening socket


def listening_sockets(port: int, table: Path = Path("/proc/net/tcp")) -> int:
    """How many IPv4 TCP sockets listen on `port` (one per process with SO_REUSEPORT)."""
    count = 0
    for line in table.read_text().splitlines()[1:]:
        fields = line.split()
        # fields[1] is the local address as HEXIP:HEXPORT, fields[3] the state.
        if len(fields) > 3 and fields[3] == TCP_LISTEN and int(fields[1].split(":")[1], 16) == port:
            count += 1
    return count


def log_tail(paths: Sequence[Path], lines: int = 20) -> str:
    """The last `lines` lines of each log that exists, headed by its path."""
    parts = []
    for path in paths:
        try:
            text = path.read_text(errors="replace").rstrip()
        except OSError:
            continue
        if text:
            tail = "\n".join("    " + line for line in text.splitlines()[-lines:])
            parts.append(f"  last lines of {path}:\n{tail}")
    return "\n".join(parts) if parts else "  (it wrote no log)"
