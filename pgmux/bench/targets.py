"""The poolers under test, PgBouncer and pgmux, started from one generated pgbouncer.ini.

Both poolers read the same settings; their two copies differ only in listen_port, pidfile and
logfile, plus pgmux's own `workers` key, which PgBouncer rejects as unknown. A pooler is ready
when its port accepts TCP connections; if it exits first, the error carries its log's tail.
PgBouncer refuses to run as root, so under root it runs as the `postgres` OS user.
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


def render_ini(pool: PoolSettings, *, name: str, port: int, run_dir: Path, workers: int) -> str:
    """The pgbouncer.ini copy for pooler `name` listening on `port`."""
    settings = shared_settings(pool) | {
        "listen_port": str(port),
        "pidfile": str(run_dir / f"{name}.pid"),
        "logfile": str(run_dir / f"{name}.log"),
    }
    if name == PGMUX:
        settings["workers"] = str(workers)
    database = f"host={pool.pg_host} port={pool.pg_port} dbname={pool.dbname}"
    return testing_pooler.render_ini({pool.dbname: database}, settings)


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
    """A running pooler process and the files that tell why it failed."""

    name: str
    port: int
    process: subprocess.Popen[bytes]
    logs: tuple[Path, ...]

    def cpu_seconds(self) -> float:
        return procstat.cpu_seconds(self.process.pid)

    def rss_kb(self) -> int:
        return procstat.rss_kb(self.process.pid)

    def check_alive(self) -> None:
        status = self.process.poll()
        if status is not None:
            raise BenchError(
                f"{self.name} exited with status {status} during the benchmark\n"
                + log_tail(self.logs)
            )

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not exited within STOP_TIMEOUT_S."""
        if self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def start_pooler(
    name: str,
    argv: Sequence[str],
    *,
    port: int,
    run_dir: Path,
    env: Mapping[str, str] | None = None,
) -> Pooler:
    """Start a pooler in its own session (a terminal's Ctrl-C reaches only the bench, which then
    stops it) and wait until its port accepts connections."""
    out_path = run_dir / f"{name}.out"
    logs = (out_path, run_dir / f"{name}.log")
    user = pooler_os_user(name)
    with out_path.open("wb") as out:
        process = subprocess.Popen(
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
    pooler = Pooler(name, port, process, logs)
    try:
        wait_for_port(pooler)
    except BaseException:
        pooler.stop()
        raise
    return pooler


def wait_for_port(pooler: Pooler, timeout: float = READY_TIMEOUT_S) -> None:
    """Return once `pooler` accepts TCP connections; raise BenchError if it exits or hangs."""
    deadline = time.monotonic() + timeout
    while True:
        status = pooler.process.poll()
        if status is not None:
            raise BenchError(
                f"{pooler.name} exited with status {status} before accepting connections "
                f"on port {pooler.port}\n" + log_tail(pooler.logs)
            )
        try:
            with socket.create_connection((LISTEN_ADDR, pooler.port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise BenchError(
                f"{pooler.name} did not accept connections on port {pooler.port} "
                f"within {timeout:.0f} s\n" + log_tail(pooler.logs)
            )
        time.sleep(0.05)


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
