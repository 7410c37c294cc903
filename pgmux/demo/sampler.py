"""What PostgreSQL saw during a set-up: peak connections and connections opened.

A thread polls ``pg_stat_activity`` every 50 ms over one superuser connection (it takes one of
the slots reserved for superusers, so it never competes with the app for the others) and keeps
the peak number of client backends on the demo database.

Connections opened are counted from the server log (the demo runs PostgreSQL with
``log_connections``): one ``connection authorized`` line per session that got in, and one
``too many clients`` line per connection turned away. ``pg_stat_database.sessions`` would count
the same sessions, but a backend may hold its counts back for up to 10 s before reporting them.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import psycopg

__all__ = ["Sampler"]

_COUNT = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = %s AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
)


class Sampler:
    def __init__(self, dsn: str, dbname: str, log_file: Path, interval: float = 0.05) -> None:
        self.dbname = dbname
        self.log_file = log_file
        self._log_offset = 0
        self.interval = interval
        self._conn: psycopg.Connection[Any] = psycopg.connect(dsn, autocommit=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.peak = 0

    def _log_size(self) -> int:
        try:
            return self.log_file.stat().st_size
        except OSError:
            return 0

    def _log_counts(self) -> tuple[int, int]:
        """(sessions authorized on the demo database, connections refused) since start()."""
        try:
            with self.log_file.open("rb") as f:
                f.seek(self._log_offset)
                text = f.read().decode("utf-8", "replace")
        except OSError:
            return 0, 0
        authorized = len(
            re.findall(rf"connection authorized: .*database={re.escape(self.dbname)}\b", text)
        )
        refused = text.count("too many clients")
        return authorized, refused

    def connections(self) -> int:
        with self._lock:
            row = self._conn.execute(_COUNT, (self.dbname,)).fetchone()
        return int(row[0]) if row else 0

    def start(self) -> None:
        self.peak = 0
        self._log_offset = self._log_size()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="pg-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> tuple[int, int, int]:
        """(peak connections, sessions opened, connections refused) since start()."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        return (self.peak, *self._log_counts())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.connections())
            except psycopg.Error:
                return  # the server went away: the demo is being torn down
            self._stop.wait(self.interval)

    def close(self) -> None:
        self._stop.set()
        self._conn.close()
