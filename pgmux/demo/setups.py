"""The demo's set-ups: one Django project, five ways of reaching PostgreSQL.

Each set-up is the environment the example project's settings read (see
examples/djangoapp/djangoapp/settings.py), plus whether pgmux runs in front of PostgreSQL.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SETUPS", "Setup"]


@dataclass(frozen=True)
class Setup:
    key: str
    title: str
    mode: str  # DJANGOAPP_MODE: direct, native-pool or pgmux
    conn_max_age: int
    via_pgmux: bool

    def env(self, database_url: str) -> dict[str, str]:
        return {
            "DJANGOAPP_MODE": self.mode,
            "DJANGOAPP_CONN_MAX_AGE": str(self.conn_max_age),
            "DJANGOAPP_DATABASE_URL": database_url,
        }


SETUPS: tuple[Setup, ...] = (
    Setup("direct", "direct, CONN_MAX_AGE=0", "direct", 0, False),
    Setup("direct-persistent", "direct, CONN_MAX_AGE=60", "direct", 60, False),
    Setup("native-pool", "Django's native pool (psycopg_pool)", "native-pool", 0, False),
    Setup("pgmux", "pgmux, CONN_MAX_AGE=0", "pgmux", 0, True),
    Setup("pgmux-persistent", "pgmux, CONN_MAX_AGE=60", "pgmux", 60, True),
)
