"""Health of the pgmux instances the project uses: reachable, and how full each pool is.

One entry per pgmux (aliases sharing a host and port share an entry). A pool's ``saturation``
is the share of its server connections that clients are using (``sv_active / pool_size``);
clients queueing behind a full pool show as ``cl_waiting`` and ``maxwait``. The whole is
healthy when every pgmux answered and no client has waited ``PGMUX_HEALTH_MAX_WAIT`` or more.
"""

from __future__ import annotations

from typing import Any

from pgmux.django.conf import conf, pgmux_aliases
from pgmux.django.console import Console, ConsoleError, Endpoint, database_row, endpoint_for

__all__ = ["collect"]


def _pool(row: dict[str, Any], databases: list[dict[str, Any]]) -> dict[str, Any]:
    db_row = database_row(databases, str(row["database"])) or {}
    size = int(db_row.get("pool_size") or 0)
    active = int(row["sv_active"])
    return {
        "database": row["database"],
        "user": row["user"],
        "pool_mode": row.get("pool_mode"),
        "pool_size": size,
        "cl_active": int(row["cl_active"]),
        "cl_waiting": int(row["cl_waiting"]),
        "sv_active": active,
        "sv_idle": int(row["sv_idle"]),
        "sv_used": int(row["sv_used"]),
        "maxwait": float(row["maxwait"]) + float(row.get("maxwait_us") or 0) / 1e6,
        "saturation": round(active / size, 3) if size else None,
    }


def _one(endpoint: Endpoint, aliases: list[str]) -> dict[str, Any]:
    report: dict[str, Any] = {"endpoint": endpoint.label, "aliases": aliases}
    try:
        with Console(endpoint) as console:
            databases = console.show("DATABASES")
            pools = [
                _pool(row, databases)
                for row in console.show("POOLS")
                if row["database"] not in ("pgmux", "pgbouncer")
            ]
    except ConsoleError as exc:
        report.update(reachable=False, error=str(exc), pools=[])
        return report
    limit = conf.health_max_wait
    report.update(
        reachable=True,
        pools=pools,
        waiting_too_long=[
            f"{p['database']}/{p['user']}"
            for p in pools
            if p["cl_waiting"] and p["maxwait"] >= limit
        ],
    )
    return report


def collect() -> tuple[bool, dict[str, Any]]:
    """(healthy, report) over every pgmux in DATABASES."""
    by_endpoint: dict[Endpoint, list[str]] = {}
    for alias in pgmux_aliases():
        by_endpoint.setdefault(endpoint_for(alias), []).append(alias)
    reports = [_one(endpoint, aliases) for endpoint, aliases in by_endpoint.items()]
    healthy = all(r["reachable"] and not r["waiting_too_long"] for r in reports)
    return healthy, {"status": "ok" if healthy else "unhealthy", "pgmux": reports}
