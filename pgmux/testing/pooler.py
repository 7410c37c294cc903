"""Starting a pgmux process for tests, benchmarks and the demo.

:class:`PgmuxProcess` writes a ``pgbouncer.ini`` (and userlist) into a temp dir, runs
``python -m pgmux run`` on it, waits until the port accepts connections, and stops it with
SIGTERM (SIGKILL if it does not go). The log is kept so that a test can read what pgmux said.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from pgmux.testing.cluster import free_port


def render_ini(
    databases: Mapping[str, str], settings: Mapping[str, object], users: Mapping[str, str] = {}
) -> str:
    lines = ["[databases]"]
    lines += [f"{name} = {conn}" for name, conn in databases.items()]
    if users:
        lines.append("[users]")
        lines += [f"{name} = {conn}" for name, conn in users.items()]
    lines.append("[pgbouncer]")
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


def render_userlist(users: Mapping[str, str]) -> str:
    return "".join(
        '"{}" "{}"\n'.format(u.replace('"', '""'), p.replace('"', '""')) for u, p in users.items()
    )


class PgmuxProcess:
    def __init__(
        self,
        databases: Mapping[str, str],
        settings: Mapping[str, object] | None = None,
        *,
        userlist: Mapping[str, str] | None = None,
        users: Mapping[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pgmux-test-"))
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.log_path = self.dir / "pgmux.log"
        self.ini_path = self.dir / "pgbouncer.ini"
        base: dict[str, object] = {
            "listen_addr": self.host,
            "listen_port": self.port,
            "unix_socket_dir": str(self.dir),
            "logfile": str(self.log_path),
        }
        if userlist is not None:
            auth_file = self.dir / "userlist.txt"
            auth_file.write_text(render_userlist(userlist))
            base["auth_file"] = str(auth_file)
        base.update(settings or {})
        self.databases = dict(databases)
        self.settings = base
        self.users = dict(users or {})
        self.write_config()
        self.process: subprocess.Popen[bytes] | None = None

    def write_config(self) -> None:
        self.ini_path.write_text(render_ini(self.databases, self.settings, self.users))

    def start(self, timeout: float = 10.0) -> PgmuxProcess:
        with open(self.dir / "stderr.log", "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pgmux", "run", str(self.ini_path)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgmux exited early:\n{self.output()}")
            try:
                socket.create_connection((self.host, self.port), timeout=0.2).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgmux did not start listening within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        text = ""
        for name in ("stderr.log", "pgmux.log"):
            path = self.dir / name
            if path.exists():
                text += path.read_text(errors="replace")
        return text

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    def reload(self) -> None:
        self.write_config()
        self.signal(signal.SIGHUP)

    def wait(self, timeout: float) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.returncode is None:
            process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)

    def dsn(self, user: str, password: str | None = None, dbname: str = "app", **extra: str) -> str:
        parts = {"host": self.host, "port": str(self.port), "user": user, "dbname": dbname}
        if password is not None:
            parts["password"] = password
        parts.update(extra)
        return " ".join(f"{k}='{v}'" for k, v in parts.items())

    def __enter__(self) -> PgmuxProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
