"""Traffic counters of one pool, as PgBouncer's SHOW STATS reports them.

Counters only ever grow; rates and averages are derived by :class:`StatsWindow` from two
snapshots ``stats_period`` apart, which is how PgBouncer computes its ``avg_*`` columns.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass, fields


@dataclass
class PoolStats:
    xact_count: int = 0
    query_count: int = 0
    server_assignment_count: int = 0
    received: int = 0
    sent: int = 0
    xact_time_us: int = 0
    query_time_us: int = 0
    wait_time_us: int = 0
    client_login_count: int = 0

    def snapshot(self) -> PoolStats:
        return PoolStats(*astuple(self))

    def add(self, other: PoolStats) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class StatsAverages:
    xact_count: float = 0.0  # per second
    query_count: float = 0.0  # per second
    server_assignment_count: float = 0.0
    received: float = 0.0  # bytes per second
    sent: float = 0.0
    xact_time_us: float = 0.0  # mean per transaction
    query_time_us: float = 0.0  # mean per query
    wait_time_us: float = 0.0  # mean per assignment
    client_login_count: float = 0.0


def averages(old: PoolStats, new: PoolStats, seconds: float) -> StatsAverages:
    """PgBouncer's avg_* columns over the interval between two snapshots."""
    if seconds <= 0:
        return StatsAverages()
    xacts = new.xact_count - old.xact_count
    queries = new.query_count - old.query_count
    assignments = new.server_assignment_count - old.server_assignment_count
    return StatsAverages(
        xact_count=xacts / seconds,
        query_count=queries / seconds,
        server_assignment_count=assignments / seconds,
        received=(new.received - old.received) / seconds,
        sent=(new.sent - old.sent) / seconds,
        xact_time_us=(new.xact_time_us - old.xact_time_us) / xacts if xacts else 0.0,
        query_time_us=(new.query_time_us - old.query_time_us) / queries if queries else 0.0,
        wait_time_us=(new.wait_time_us - old.wait_time_us) / assignments if assignments else 0.0,
        client_login_count=(new.client_login_count - old.client_login_count) / seconds,
    )
