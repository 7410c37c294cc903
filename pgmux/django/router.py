"""A primary/replica database router with read-your-writes.

``DATABASE_ROUTERS = ["pgmux.django.router.PrimaryReplicaRouter"]`` with ``PGMUX_PRIMARY`` and
``PGMUX_REPLICAS`` (or replica-marked entries from the settings helper):

* writes and migrations go to the primary; replicas never get ``migrate``;
* reads go to the healthy replicas in turn; a replica that fails its probe, or lags more than
  ``PGMUX_REPLICA_MAX_LAG``, is skipped until a later probe passes, and with none left reads go
  to the primary;
* after a write, the rest of the request reads from the primary, and so do the same client's
  requests for ``PGMUX_READ_YOUR_WRITES_SECONDS`` (the middleware carries that in a cookie);
  inside ``transaction.atomic()`` on the primary, reads stay in that transaction;
* objects from any of these aliases may be related to each other (they hold the same data);
* ``QuerySet.using()`` and ``db_manager()`` bypass routers, as always in Django.

The router is a plain class, as Django expects; per-request state lives in ``scope``.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from django.db import connections

from pgmux.django import scope
from pgmux.django.conf import conf

__all__ = ["PrimaryReplicaRouter", "ReplicaHealth", "replica_health"]

# On a primary both LSN functions return NULL, so the lag reads as 0.
_PROBE_SQL = (
    "SELECT CASE WHEN pg_last_wal_receive_lsn() IS NULL"
    " OR pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0"
    " ELSE coalesce(extract(epoch FROM now() - pg_last_xact_replay_timestamp()), 0) END"
)


@dataclass
class _State:
    healthy: bool = True  # optimistic until the first probe says otherwise
    checked_at: float = float("-inf")
    probing: bool = False
    error: str = ""


class ReplicaHealth:
    """Per-process replica health, probed at most every ``PGMUX_REPLICA_CHECK_INTERVAL``.

    The probe is a fresh connection with the alias's own parameters and one query, so it tests
    the whole path (pgmux, its pool, the replica) without touching the request's connections.
    One thread probes a replica at a time; the others use the last verdict meanwhile.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._states: dict[str, _State] = {}

    def healthy(self, aliases: tuple[str, ...]) -> list[str]:
        now = time.monotonic()
        interval = conf.replica_check_interval
        result = []
        for alias in aliases:
            with self._lock:
                state = self._states.setdefault(alias, _State())
                due = not state.probing and now - state.checked_at >= interval
                if due:
                    state.probing = True
            if due:
                self._probe(alias, state)
            if state.healthy:
                result.append(alias)
        return result

    def forget(self) -> None:
        with self._lock:
            self._states.clear()

    def status(self) -> dict[str, tuple[bool, str]]:
        with self._lock:
            return {alias: (s.healthy, s.error) for alias, s in self._states.items()}

    def _probe(self, alias: str, state: _State) -> None:
        healthy, error = True, ""
        try:
            params = dict(connections[alias].get_connection_params())
            params["connect_timeout"] = max(1, int(conf.console_timeout))
            params["autocommit"] = True
            with psycopg.connect(**params) as conn:
                row = conn.execute(_PROBE_SQL).fetchone()
            lag = float(row[0]) if row else 0.0
            limit = conf.replica_max_lag
            if limit is not None and lag > limit:
                healthy, error = False, f"replay lag {lag:.1f}s exceeds PGMUX_REPLICA_MAX_LAG"
        except Exception as exc:  # any failure means "do not read from it for a while"
            text = str(exc).strip()
            healthy, error = False, text.splitlines()[0] if text else repr(exc)
        with self._lock:
            state.healthy, state.error = healthy, error
            state.checked_at = time.monotonic()
            state.probing = False


replica_health = ReplicaHealth()


def _instance_db(hints: dict[str, Any]) -> str | None:
    instance = hints.get("instance")
    state = getattr(instance, "_state", None)
    db = getattr(state, "db", None)
    return db if isinstance(db, str) else None


class PrimaryReplicaRouter:
    """See the module docstring."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    def _aliases(self) -> set[str]:
        return {conf.primary, *conf.replicas}

    def db_for_read(self, model: type[Any], **hints: Any) -> str | None:
        primary = conf.primary
        if scope.pinned() or connections[primary].in_atomic_block:
            return primary
        # Related objects are read where their instance came from: a row just written to the
        # primary has its children read there too, and a replica's rows stay consistent.
        instance_db = _instance_db(hints)
        if instance_db is not None and instance_db in self._aliases():
            return instance_db
        replicas = replica_health.healthy(conf.replicas)
        if not replicas:
            return primary
        return replicas[next(self._turn) % len(replicas)]

    def db_for_write(self, model: type[Any], **hints: Any) -> str | None:
        scope.mark_write()
        return conf.primary

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool | None:
        aliases = self._aliases()
        if obj1._state.db in aliases and obj2._state.db in aliases:
            return True
        return None

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if db == conf.primary:
            return True
        if db in conf.replicas:
            return False
        return None
