"""What a pooler process costs, read from /proc: CPU seconds and resident memory.

A pooler may be several processes (pgmux with `workers > 1` forks children), so every figure
is summed over the process and all its descendants. /proc/PID/stat's utime and stime already
include all of a process's threads.
"""

from __future__ import annotations

import os
from pathlib import Path

PROC = Path("/proc")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def parse_stat(text: str) -> tuple[int, int]:
    """(ppid, utime + stime in clock ticks) from the text of /proc/PID/stat.

    The command name in field 2 may contain spaces and parentheses, so fields are counted
    from the last ")".
    """
    fields = text[text.rindex(")") + 2 :].split()
    # After the name: state(3) ppid(4) ... utime(14) stime(15), numbered as in proc(5).
    return int(fields[1]), int(fields[11]) + int(fields[12])


def parse_vmrss_kb(status_text: str) -> int:
    """VmRSS in kB from /proc/PID/status text; 0 for a process without memory (a zombie)."""
    for line in status_text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def process_tree(root: int) -> list[int]:
    """`root` and all its live descendants."""
    children: dict[int, list[int]] = {}
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid, _ = parse_stat((entry / "stat").read_text())
        except (OSError, ValueError):
            continue  # the process ended while we looked
        children.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, ()))
    return tree


def cpu_seconds(root: int) -> float:
    """User plus system CPU seconds used so far by `root` and its descendants."""
    ticks = 0
    for pid in process_tree(root):
        try:
            ticks += parse_stat((PROC / str(pid) / "stat").read_text())[1]
        except (OSError, ValueError):
            continue
    return ticks / _TICKS_PER_SECOND


def rss_kb(root: int) -> int:
    """Resident memory of `root` and its descendants in kB; shared pages count in each process."""
    total = 0
    for pid in process_tree(root):
        try:
            total += parse_vmrss_kb((PROC / str(pid) / "status").read_text())
        except OSError:
            continue
    return total
