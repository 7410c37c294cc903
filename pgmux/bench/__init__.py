"""The benchmark suite behind `pgmux bench`: pgmux against PgBouncer and direct PostgreSQL.

`main(argv)` is the whole command; see docs/benchmarks.md for the workloads and how to read
the ratios.
"""

from __future__ import annotations

from pgmux.bench.command import main

__all__ = ["main"]
