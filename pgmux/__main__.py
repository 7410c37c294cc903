"""``python -m pgmux``: the same as the ``pgmux`` command."""

from pgmux.cli import main

raise SystemExit(main())
