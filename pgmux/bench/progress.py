"""A plain-text progress bar on stderr: `[#####.....] 12/36 select c=20 pgmux round 2`.

On a terminal the line is redrawn in place; otherwise (a log file, CI) each step is a line.
"""

from __future__ import annotations

import sys
from typing import TextIO

WIDTH = 20


def bar(done: int, total: int, width: int = WIDTH) -> str:
    """`[####......]` filled in proportion to done/total."""
    filled = width * done // total if total else width
    return "[" + "#" * filled + "." * (width - filled) + "]"


class Progress:
    """Counts steps out of a known total and shows which one is running."""

    def __init__(self, total: int, stream: TextIO | None = None) -> None:
        self.total = total
        self.done = 0
        self.stream = stream if stream is not None else sys.stderr
        self.in_place = self.stream.isatty()
        self._last_width = 0

    def start(self, label: str) -> None:
        """Show that step `done + 1` (described by `label`) is running."""
        self._show(f"{bar(self.done, self.total)} {self.done + 1}/{self.total} {label}")

    def advance(self) -> None:
        self.done += 1

    def note(self, message: str) -> None:
        """A message line that must not be overwritten by the bar."""
        self.clear()
        print(message, file=self.stream, flush=True)

    def clear(self) -> None:
        if self.in_place and self._last_width:
            self.stream.write("\r" + " " * self._last_width + "\r")
            self.stream.flush()
            self._last_width = 0

    def _show(self, line: str) -> None:
        if self.in_place:
            padding = " " * max(0, self._last_width - len(line))
            self.stream.write("\r" + line + padding)
            self._last_width = len(line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
