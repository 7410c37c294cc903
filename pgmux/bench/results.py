"""Records of single benchmark runs: what the runner measures and the report aggregates.

One record is one run of one workload against one target at one client count in one round.
They are plain frozen dataclasses so that results.json is just their fields.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunResult:
    """One pgbench run. None means pgbench printed no such figure (e.g. all clients aborted)."""

    workload: str
    target: str
    clients: int
    round: int
    tps: float | None
    latency_ms: float | None
    p99_ms: float | None
    failed: int
    pooler_cpu_s: float | None
    error: str | None = None  # pgbench could not start the run at all
    first_failure: str | None = None  # what pgbench said about the first failure, if any
    transactions: int | None = None  # pgbench's "number of transactions actually processed"

    @property
    def cpu_us_per_transaction(self) -> float | None:
        """The pooler's CPU time per transaction (per connection with -C), in microseconds.

        The pooler's CPU is read over the whole pgbench run, its clients' logins included, so
        at hundreds of clients this is a little above the cost of the transactions alone.
        """
        if self.pooler_cpu_s is None or not self.transactions:
            return None
        return self.pooler_cpu_s * 1e6 / self.transactions


@dataclass(frozen=True)
class IdleResult:
    """One idle-connections run: the pooler's resident memory before and while `opened` sit idle."""

    workload: str
    target: str
    clients: int
    round: int
    opened: int
    rss_before_kb: int
    rss_after_kb: int
    error: str | None = None

    @property
    def per_conn_kb(self) -> float | None:
        if self.opened == 0:
            return None
        return (self.rss_after_kb - self.rss_before_kb) / self.opened
