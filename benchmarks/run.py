#!/usr/bin/env python3
"""Run the benchmark suite from a checkout: `python3 benchmarks/run.py [pgmux bench options]`.

The same as `pgmux bench`, for when pgmux is not installed; see benchmarks/README.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pgmux.bench import main  # after the sys.path line: it needs the checkout first

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
