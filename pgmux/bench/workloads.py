"""The benchmark workloads: what each one runs, at which client counts, and where it cannot run.

A workload is data, not code: the runner turns it into pgbench command lines (or, for `idle`,
into a crowd of idle client connections). Names are what `--workload` accepts.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

# Auth types as PgBouncer spells them in `auth_type`; each has its own database role.
SCRAM = "scram-sha-256"
MD5 = "md5"

# ~10 MB of DataRows per transaction: 10,000 rows of a 1,000-byte text value.
LARGE_SCRIPT = "SELECT repeat('x', 1000) FROM generate_series(1, 10000);\n"

# PgBouncer 1.21 added prepared statements in transaction mode, but off until 1.24 made
# max_prepared_statements default to 200; the shared ini sets no version-specific keys.
PREPARED_MIN_PGBOUNCER = (1, 24)
NO_DIRECT_IDLE = "idle measures a pooler's memory; there is no pooler process to measure"


@dataclass(frozen=True)
class Workload:
    """One named benchmark. `unsupported` maps a target name to why it is not run there."""

    name: str
    description: str
    clients: tuple[int, ...]
    pgbench_args: tuple[str, ...] = ()
    script: str | None = None
    auth_type: str = SCRAM
    kind: Literal["pgbench", "idle"] = "pgbench"
    unsupported: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    min_pgbouncer: tuple[int, ...] = ()


WORKLOADS: tuple[Workload, ...] = (
    Workload(
        "select",
        "pgbench -S (one primary-key SELECT per transaction), simple protocol",
        (1, 20, 100, 500),
        ("-S",),
    ),
    Workload(
        "connect-scram",
        "pgbench -S -C: a new connection per transaction, SCRAM-SHA-256 on the client hop",
        (20,),
        ("-S", "-C"),
    ),
    Workload(
        "connect-md5",
        "pgbench -S -C: a new connection per transaction, md5 on the client hop",
        (20,),
        ("-S", "-C"),
        auth_type=MD5,
    ),
    Workload("tpcb", "pgbench's default TPC-B-like script (5 statements per transaction)", (20,)),
    Workload(
        "prepared",
        "pgbench -M prepared -S: extended protocol with named prepared statements",
        (20,),
        ("-M", "prepared", "-S"),
        min_pgbouncer=PREPARED_MIN_PGBOUNCER,
    ),
    Workload(
        "large",
        "a custom script whose result is ~10 MB per transaction (10,000 rows x 1 kB)",
        (4,),
        script=LARGE_SCRIPT,
    ),
    Workload(
        "idle",
        "open N client connections that log in and then sit idle; report the pooler's memory",
        (10000,),
        auth_type=MD5,
        kind="idle",
        unsupported=MappingProxyType({"direct": NO_DIRECT_IDLE}),
    ),
)

WORKLOAD_NAMES: tuple[str, ...] = tuple(w.name for w in WORKLOADS)


def select_workloads(names: list[str]) -> list[Workload]:
    """The workloads named, in the suite's order; no names (or `all`) means every workload."""
    wanted = set(names)
    if not wanted or "all" in wanted:
        return list(WORKLOADS)
    unknown = wanted - set(WORKLOAD_NAMES)
    if unknown:
        raise ValueError(
            f"unknown workload(s): {', '.join(sorted(unknown))}; "
            f"choose from {', '.join(WORKLOAD_NAMES)}"
        )
    return [w for w in WORKLOADS if w.name in wanted]


def unsupported_reason(
    workload: Workload, target: str, pgbouncer_version: tuple[int, ...] | None
) -> str | None:
    """Why `workload` is not run against `target`, or None when it is."""
    reason = workload.unsupported.get(target)
    if reason is not None:
        return reason
    version = pgbouncer_version
    if target == "pgbouncer" and version is not None and version < workload.min_pgbouncer:
        shown = ".".join(map(str, version))
        needed = ".".join(map(str, workload.min_pgbouncer))
        return f"PgBouncer {shown} cannot run it in transaction mode (needs {needed}+)"
    return None
