"""Starting and stopping what the demo runs: PostgreSQL, pgmux, gunicorn with the project.

``Stack`` owns every process it starts and ``close()`` stops them all, in reverse order, also
after Ctrl-C or SIGTERM (the demo turns SIGTERM into KeyboardInterrupt). gunicorn runs in its
own session so that a terminal's Ctrl-C reaches only the demo, which then stops it in order.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pgmux.testing import PostgresCluster, free_port
from pgmux.testing.pooler import PgmuxProcess

__all__ = ["APP_DB", "APP_PASSWORD", "APP_USER", "Stack", "find_project"]

APP_DB = "djangoapp"
APP_USER = "app"
APP_PASSWORD = "app-demo-password"
ADMIN_USER = "pgmux_admin"
ADMIN_PASSWORD = "pgmux-admin-password"


def find_project(explicit: str | None) -> Path:
    """examples/djangoapp of this checkout, or the directory given with --project."""
    path = (
        Path(explicit) if explicit else Path(__file__).resolve().parents[2] / "examples/djangoapp"
    )
    if not (path / "manage.py").is_file():
        raise SystemExit(f"pgmux demo: no Django project at {path} (pass --project DIR)")
    return path


class Stack:
    def __init__(self, project: Path, *, max_connections: int, pool_size: int) -> None:
        self.project = project
        self.max_connections = max_connections
        self.pool_size = pool_size
        self.workdir = Path(tempfile.mkdtemp(prefix="pgmux-demo-"))
        self.cluster: PostgresCluster | None = None
        self.pgmux: PgmuxProcess | None = None
        self.app: subprocess.Popen[bytes] | None = None
        self.app_port = 0

    # -- PostgreSQL --------------------------------------------------------------------------

    def start_postgres(self) -> PostgresCluster:
        # No slots reserved for superusers: then every connection past max_connections gets
        # PostgreSQL's plain "sorry, too many clients already". The demo's own sampler is one
        # of those connections.
        settings = {"log_connections": "on", "superuser_reserved_connections": "0"}
        cluster = PostgresCluster(max_connections=self.max_connections, settings=settings)
        self.cluster = cluster
        cluster.start()
        cluster.add_user(APP_USER, APP_PASSWORD, method="scram-sha-256")
        cluster.create_database(APP_DB, owner=APP_USER)
        return cluster

    def direct_url(self) -> str:
        assert self.cluster is not None
        return (
            f"postgres://{APP_USER}:{APP_PASSWORD}@{self.cluster.host}:{self.cluster.port}/{APP_DB}"
        )

    # -- pgmux -------------------------------------------------------------------------------

    def start_pgmux(self) -> PgmuxProcess:
        assert self.cluster is not None
        target = f"host={self.cluster.host} port={self.cluster.port}"
        self.pgmux = PgmuxProcess(
            {APP_DB: f"{target} dbname={APP_DB}"},
            {
                "pool_mode": "transaction",
                "default_pool_size": self.pool_size,
                "max_client_conn": 1000,
                "auth_type": "scram-sha-256",
                "admin_users": ADMIN_USER,
                "log_connections": 0,
                "log_disconnections": 0,
            },
            userlist={APP_USER: APP_PASSWORD, ADMIN_USER: ADMIN_PASSWORD},
        ).start()
        return self.pgmux

    def pgmux_url(self) -> str:
        assert self.pgmux is not None
        return f"postgres://{APP_USER}:{APP_PASSWORD}@{self.pgmux.host}:{self.pgmux.port}/{APP_DB}"

    def stop_pgmux(self) -> None:
        if self.pgmux is not None:
            self.pgmux.stop()
            self.pgmux = None

    # -- the Django project ------------------------------------------------------------------

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DJANGO"))}
        repo = str(Path(__file__).resolve().parents[2])
        env.update(
            DJANGO_SETTINGS_MODULE="djangoapp.settings",
            PYTHONPATH=os.pathsep.join([str(self.project), repo]),
            PGMUX_ADMIN_USER=ADMIN_USER,
            PGMUX_ADMIN_PASSWORD=ADMIN_PASSWORD,
        )
        env.update(extra)
        return env

    def manage(self, *args: str, env: dict[str, str]) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=self.project,
            env=self.env(env),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if result.returncode != 0:
            raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{result.stderr[-3000:]}")
        return result.stdout

    def start_app(self, env: dict[str, str], *, workers: int, threads: int) -> int:
        self.app_port = free_port()
        log = (self.workdir / "gunicorn.log").open("ab")
        self.app = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gunicorn",
                "djangoapp.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.app_port}",
                "--workers",
                str(workers),
                "--threads",
                str(threads),
                "--worker-class",
                "gthread",
                "--backlog",
                "2048",
                "--timeout",
                "120",
                "--graceful-timeout",
                "5",
                "--log-level",
                "warning",
            ],
            cwd=self.project,
            env=self.env(env),
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
        log.close()
        self._wait_ready()
        return self.app_port

    def _wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.app is None or self.app.poll() is not None:
                raise RuntimeError(f"gunicorn exited early; see {self.workdir / 'gunicorn.log'}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.app_port, timeout=5)
                conn.request("GET", "/products/1/")
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"gunicorn did not answer within {timeout:.0f} s")

    def stop_app(self) -> None:
        app, self.app = self.app, None
        if app is None:
            return
        # The whole process group: workers too, even if the master already died.
        try:
            os.killpg(app.pid, signal.SIGTERM)
        except ProcessLookupError:
            app.wait()
            return
        try:
            app.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(app.pid, signal.SIGKILL)
            app.wait()

    # -- everything --------------------------------------------------------------------------

    def close(self) -> None:
        # Each step runs even if an earlier one fails: nothing may be left behind.
        for step in (self.stop_app, self.stop_pgmux, self._stop_postgres, self._remove_workdir):
            try:
                step()
            except Exception as exc:  # report and go on cleaning up
                print(f"pgmux demo: cleanup: {exc}", file=sys.stderr)

    def _remove_workdir(self) -> None:
        shutil.rmtree(self.workdir, ignore_errors=True)

    def _stop_postgres(self) -> None:
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.stop()
