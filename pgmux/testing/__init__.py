"""Test support shared by the test suite, the benchmarks and the demo.

``PostgresCluster`` runs a throwaway PostgreSQL server; ``free_port`` picks a TCP port for
anything else a test needs to listen on. Both use the standard library only. ``fakes`` (import
it by name) drives pgmux's own connection objects without sockets, for property tests and
``benchmarks/hotpath.py``.
"""

from __future__ import annotations

from pgmux.testing.cluster import ClusterError, PostgresCluster, find_pg_bindir, free_port

__all__ = ["ClusterError", "PostgresCluster", "find_pg_bindir", "free_port"]
