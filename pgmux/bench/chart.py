"""tps.png: throughput against client count for the `select` workload, one line per target.

matplotlib is optional (the `bench` extra); without it the chart is skipped and the caller is
told why.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pgmux.bench.report import Cell
from pgmux.bench.targets import TARGETS

CHART_WORKLOAD = "select"


def series(
    cells: Sequence[Cell], workload: str = CHART_WORKLOAD
) -> dict[str, list[tuple[int, float]]]:
    """target -> [(clients, tps), ...] sorted by clients, for cells that have a tps."""
    lines: dict[str, list[tuple[int, float]]] = {}
    for cell in cells:
        if cell.workload == workload and cell.tps is not None:
            lines.setdefault(cell.target, []).append((cell.clients, cell.tps))
    return {t: sorted(lines[t]) for t in TARGETS if t in lines}


def write_tps_chart(cells: Sequence[Cell], path: Path) -> str:
    """Draw the chart to `path`; return a line telling what happened."""
    lines = series(cells)
    if not lines:
        return f"tps.png skipped: no `{CHART_WORKLOAD}` results to draw"
    try:
        import matplotlib
    except ImportError:
        return "tps.png skipped: matplotlib is not installed (pip install 'pgmux[bench]')"
    matplotlib.use("Agg")  # no display: draw to a file only
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(figsize=(7, 4.5))
    for target, points in lines.items():
        clients, tps = zip(*points, strict=True)
        axes.plot(clients, tps, marker="o", label=target)
    axes.set_xscale("log")
    axes.set_xticks(sorted({c for points in lines.values() for c, _ in points}))
    axes.get_xaxis().set_major_formatter(matplotlib.ticker.ScalarFormatter())
    axes.set_ylim(bottom=0)  # a ratio reads true only against a zero baseline
    axes.set_xlabel("clients")
    axes.set_ylabel("transactions per second")
    axes.set_title("pgbench -S (select), median over rounds")
    axes.grid(True, alpha=0.3)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
    return f"wrote {path}"
