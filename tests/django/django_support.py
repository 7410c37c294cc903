"""Helpers for the Django tests: running the example project, starting pgmux for it.

Django's settings are process-wide, so every test that needs a configured Django runs the
example project (examples/djangoapp) in a subprocess with ``DJANGO_SETTINGS_MODULE`` and
environment variables saying where the database is; this pytest process never configures
Django. Test scenarios that run inside those subprocesses live in ``cases/`` (not collected by
pytest: their names do not start with ``test_``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pgmux.testing import PostgresCluster
from pgmux.testing.pooler import PgmuxProcess

REPO = Path(__file__).resolve().parents[2]
PROJECT = REPO / "examples" / "djangoapp"
HERE = Path(__file__).resolve().parent
DB = "djangoapp"
APP = ("app", "app-pw")
ADMIN = ("admin", "admin-pw")


@dataclass
class DjangoEnv:
    """Where the example project's database is, and how to run Django commands against it."""

    cluster: PostgresCluster
    pgmux: PgmuxProcess

    def url(self, pgmux: PgmuxProcess | None = None, dbname: str = DB) -> str:
        p = pgmux or self.pgmux
        return f"postgres://{APP[0]}:{APP[1]}@{p.host}:{p.port}/{dbname}"

    def direct_url(self) -> str:
        return f"postgres://{APP[0]}:{APP[1]}@{self.cluster.host}:{self.cluster.port}/{DB}"

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DJANGO"))}
        env.update(
            DJANGO_SETTINGS_MODULE="djangoapp.settings",
            PYTHONPATH=os.pathsep.join([str(PROJECT), str(HERE), str(REPO)]),
            DJANGOAPP_DATABASE_URL=self.url(),
            PGMUX_ADMIN_USER=ADMIN[0],
            PGMUX_ADMIN_PASSWORD=ADMIN[1],
            PYTHONWARNINGS="error",  # as pytest's filterwarnings = error, inside the project
        )
        env.update(extra)
        return env

    def run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """``python -m django ARGS``, or ``python ARGS`` for a script or ``-m module``."""
        plain = args[0].endswith(".py") or args[0] == "-m"
        argv = [sys.executable, *args] if plain else [sys.executable, "-m", "django", *args]
        return subprocess.run(
            argv,
            cwd=PROJECT,
            env=dict(env or self.env()),
            capture_output=True,
            text=True,
            timeout=timeout,
        )


def start_pgmux(
    cluster: PostgresCluster, databases: Mapping[str, str] | None = None, **settings: object
) -> PgmuxProcess:
    target = f"host={cluster.host} port={cluster.port}"
    if databases is None:
        databases = {DB: f"{target} dbname={DB}", "*": target}
    merged: dict[str, object] = {
        "pool_mode": "transaction",
        "default_pool_size": 5,
        "max_client_conn": 500,
        "auth_type": "scram-sha-256",
        "admin_users": ADMIN[0],
    }
    merged.update(settings)
    return PgmuxProcess(databases, merged, userlist={APP[0]: APP[1], ADMIN[0]: ADMIN[1]}).start()
