"""The demo's results: one row per set-up, printed as a table, saved as JSON and drawn as PNG."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from pgmux.demo.load import LoadResult

__all__ = ["Row", "percentile", "render_table", "write_chart", "write_json"]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, math.ceil(fraction * len(ordered)) - 1))
    return ordered[index]


@dataclass
class Row:
    key: str
    title: str
    seconds: float
    requests: int
    errors: int
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    first_error: str
    error_kinds: dict[str, int]
    peak_pg_connections: int
    pg_sessions_opened: int
    pg_connections_per_s: float
    pg_refused: int
    via_pgmux: bool
    pool_size: int | None

    @classmethod
    def build(
        cls,
        key: str,
        title: str,
        load: LoadResult,
        peak: int,
        opened: int,
        refused: int,
        *,
        load_seconds: float,
        pool_size: int | None,
    ) -> Row:
        seconds = max(load.seconds, load_seconds)
        return cls(
            key=key,
            title=title,
            seconds=round(seconds, 2),
            requests=load.ok + load.errors,
            errors=load.errors,
            requests_per_s=round(load.ok / seconds, 1),
            p50_ms=round(percentile(load.latencies, 0.50) * 1000, 1),
            p99_ms=round(percentile(load.latencies, 0.99) * 1000, 1),
            first_error=load.first_error,
            error_kinds=dict(load.error_kinds),
            peak_pg_connections=peak,
            pg_sessions_opened=opened,
            pg_connections_per_s=round(opened / seconds, 1),
            pg_refused=refused,
            via_pgmux=pool_size is not None,
            pool_size=pool_size,
        )


_COLUMNS = (
    ("set-up", "title", "<"), ("req/s", "requests_per_s", ">"), ("p50 ms", "p50_ms", ">"),
    ("p99 ms", "p99_ms", ">"), ("requests", "requests", ">"), ("errors", "errors", ">"),
    ("peak PG conns", "peak_pg_connections", ">"),
    ("PG conns opened/s", "pg_connections_per_s", ">"),
)  # fmt: skip


def render_table(rows: Sequence[Row]) -> str:
    """A Markdown table (it reads fine in a terminal too), then the first error of each."""
    cells = [[str(getattr(row, attr)) for _, attr, _ in _COLUMNS] for row in rows]
    widths = [
        max(len(head), *(len(c[i]) for c in cells)) for i, (head, _, _) in enumerate(_COLUMNS)
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            f"{v:{align}{w}}" for v, w, (_, _, align) in zip(values, widths, _COLUMNS, strict=True)
        ]
        return "| " + " | ".join(parts) + " |"

    out = [line([head for head, _, _ in _COLUMNS])]
    out.append(
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if a == ">" else "-" * (w + 2)
            for w, (_, _, a) in zip(widths, _COLUMNS, strict=True)
        )
        + "|"
    )
    out += [line(c) for c in cells]
    notes = [f"- {row.title}: first error: {row.first_error}" for row in rows if row.errors]
    return "\n".join(out + (["", *notes] if notes else [])) + "\n"


def write_json(rows: Sequence[Row], settings: dict[str, object], path: Path) -> None:
    path.write_text(
        json.dumps({"settings": settings, "setups": [asdict(r) for r in rows]}, indent=2) + "\n"
    )


def write_chart(rows: Sequence[Row], max_connections: int, path: Path) -> str:
    """Four bar charts side by side; returns a line saying what happened."""
    try:
        import matplotlib
    except ImportError:
        return f"{path.name} skipped: matplotlib is not installed (pip install 'pgmux[demo]')"
    matplotlib.use("Agg")  # no display: draw to a file only
    from matplotlib import pyplot

    labels = [
        row.title.replace("CONN_MAX_AGE=", "max age ").replace(", ", "\n").replace(" (", "\n(")
        for row in rows
    ]
    colors = ["#1f77b4" if row.via_pgmux else "#999999" for row in rows]
    panels = (
        ("requests/s (higher is better)", [r.requests_per_s for r in rows]),
        ("p99 latency, ms", [r.p99_ms for r in rows]),
        ("failed requests", [r.errors for r in rows]),
        ("peak PostgreSQL connections", [r.peak_pg_connections for r in rows]),
    )
    figure, grid = pyplot.subplots(2, 2, figsize=(13, 9))
    axes = list(grid.flat)
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.bar(range(len(rows)), values, color=colors)
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        ax.set_title(title)
        ax.set_ylim(bottom=0)
        ax.grid(True, axis="y", alpha=0.3)
    axes[-1].axhline(
        max_connections,
        color="#d62728",
        linestyle="--",
        label=f"max_connections = {max_connections}",
    )
    axes[-1].legend(fontsize=8)
    figure.suptitle(
        "The same Django project and load, five ways to reach PostgreSQL\n(blue: through pgmux)"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return f"wrote {path}"
