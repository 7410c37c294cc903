"""``pgmux demo`` in a short mode: every set-up runs, and through pgmux PostgreSQL never sees
more server connections than pgmux's pool size, with no failed request."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from pgmux.demo.setups import SETUPS


def test_demo_short_run(tmp_path: Path) -> None:
    pool_size = 4
    argv = [sys.executable, "-m", "pgmux", "demo", "--seconds", "2", "--clients", "40",
            "--workers", "2", "--threads", "8", "--pool-size", str(pool_size),
            "--out", str(tmp_path)]  # fmt: skip
    result = subprocess.run(argv, capture_output=True, text=True, timeout=240)
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]
    report = json.loads((tmp_path / "demo.json").read_text())
    rows = {row["key"]: row for row in report["setups"]}
    assert list(rows) == [setup.key for setup in SETUPS]
    for key, row in rows.items():
        assert row["requests"] > 0, (key, row)
        assert row["peak_pg_connections"] > 0, (key, row)
        if row["via_pgmux"]:
            assert row["pool_size"] == pool_size
            assert row["peak_pg_connections"] <= pool_size, (key, row)
            assert row["errors"] == 0, (key, row)
    assert (tmp_path / "demo.png").stat().st_size > 10_000
    assert "| set-up" in result.stdout and "pgmux, CONN_MAX_AGE=60" in result.stdout
