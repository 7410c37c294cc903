"""pgbench as the measuring instrument: the command line of a run and the reading of its output.

pgbench 15 prints a summary on stdout ("tps = ...", "latency average = ...", "number of failed
transactions: ...") and reports aborted clients on stderr; with `-l` it writes one line per
transaction, from which the p99 latency is taken. Parsing is pure so it is tested on text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

# Without -C pgbench prints "tps = N (without initial connection time)"; with -C it prints
# "tps = N (including reconnection times)", the figure that counts connection set-up.
_TPS = re.compile(r"^tps = ([0-9.]+)", re.MULTILINE)
_LATENCY = re.compile(r"^latency average = ([0-9.]+) ms", re.MULTILINE)
_CONNECT = re.compile(r"^initial connection time = ([0-9.]+) ms", re.MULTILINE)
_FAILED = re.compile(r"^number of failed transactions: ([0-9]+)", re.MULTILINE)
_PROCESSED = re.compile(r"^number of transactions actually processed: ([0-9]+)", re.MULTILINE)
_ABORTED = re.compile(r"^pgbench: error: client [0-9]+ .*aborted", re.MULTILINE)

# pgbench's exit status: 1 = bad options or no initial connection, 2 = errors during the run.
EXIT_COULD_NOT_START = 1


@dataclass(frozen=True)
class PgbenchSummary:
    """The figures of one run's summary; None where pgbench printed none."""

    tps: float | None
    latency_ms: float | None
    connect_ms: float | None
    failed_transactions: int
    aborted_clients: int
    transactions: int | None = None  # "number of transactions actually processed"


def parse_summary(stdout: str, stderr: str) -> PgbenchSummary:
    """Read the end-of-run summary that pgbench printed."""
    return PgbenchSummary(
        tps=_float(_TPS, stdout),
        latency_ms=_float(_LATENCY, stdout),
        connect_ms=_float(_CONNECT, stdout),
        failed_transactions=_int(_FAILED, stdout) or 0,
        aborted_clients=len(_ABORTED.findall(stderr)),
        transactions=_int(_PROCESSED, stdout),
    )


# pgbench's -T clock starts before its clients connect, and 500 SCRAM logins take seconds on a
# small machine (5 s on 2 idle cores, more on a busy one): without an allowance a short run could
# end before its first transaction. The tps figure leaves the connection phase out either way.
CLIENTS_PER_EXTRA_SECOND = 50


def run_duration(seconds: int, clients: int) -> int:
    """pgbench's -T for a run meant to measure `seconds` at `clients` clients."""
    return seconds + clients // CLIENTS_PER_EXTRA_SECOND


def retry_duration(summary: PgbenchSummary, duration: int, seconds: int) -> int | None:
    """A longer -T when connecting left less than half of `seconds` to measure, else None.

    A run that processed no transaction prints no connection time; it is taken to have spent
    the whole of `duration` connecting.
    """
    if summary.tps is not None and summary.connect_ms is None:
        return None  # -C runs print no initial connection time: connecting is what they measure
    connect_s = duration if summary.connect_ms is None else summary.connect_ms / 1000
    if duration - connect_s >= seconds / 2:
        return None
    return seconds + math.ceil(1.5 * connect_s)


def count_failures(summary: PgbenchSummary, returncode: int) -> int:
    """Failed transactions plus aborted clients; a failing exit with neither still counts one."""
    failures = summary.failed_transactions + summary.aborted_clients
    if returncode != 0 and failures == 0:
        return 1
    return failures


def error_line(stderr: str) -> str:
    """The first line pgbench flagged as an error, for a report that has to say what went wrong."""
    for line in stderr.splitlines():
        if "error" in line.lower() or "fatal" in line.lower():
            return line.strip()
    lines = stderr.strip().splitlines()
    return lines[-1].strip() if lines else "pgbench failed without a message"


def log_latencies_us(lines: Iterable[str]) -> list[int]:
    """Per-transaction latencies (microseconds) from `pgbench -l` lines.

    A line is `client_id transaction_no time script_no time_epoch time_us ...`; `time` is
    "failed" or "skipped" for transactions that did not complete, which are left out.
    """
    latencies = []
    for line in lines:
        fields = line.split(maxsplit=3)
        if len(fields) >= 3 and fields[2].isdigit():
            latencies.append(int(fields[2]))
    return latencies


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile: the smallest value with at least `fraction` of all at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def p99_from_logs(log_dir: Path) -> float | None:
    """The p99 latency in milliseconds over every per-transaction log file in `log_dir`."""
    latencies: list[int] = []
    for path in sorted(log_dir.iterdir()):
        with path.open() as lines:
            latencies.extend(log_latencies_us(lines))
    p99 = percentile(latencies, 0.99)
    return None if p99 is None else p99 / 1000.0


def pgbench_argv(
    pgbench: str,
    *,
    host: str,
    port: int,
    user: str,
    dbname: str,
    clients: int,
    duration: int,
    threads: int,
    workload_args: Sequence[str],
    log_prefix: Path,
) -> list[str]:
    """The command line of one run of `duration` seconds; `-n`: tables were vacuumed at set-up."""
    return [
        pgbench,
        "-h", host, "-p", str(port), "-U", user,
        "-n", "-T", str(duration), "-c", str(clients), "-j", str(threads),
        "-l", f"--log-prefix={log_prefix}",
        *workload_args,
        dbname,
    ]  # fmt: skip


def _first(pattern: re.Pattern[str], text: str) -> str | None:
    match = pattern.search(text)
    return match.group(1) if match else None


def _float(pattern: re.Pattern[str], text: str) -> float | None:
    value = _first(pattern, text)
    return None if value is None else float(value)


def _int(pattern: re.Pattern[str], text: str) -> int | None:
    value = _first(pattern, text)
    return None if value is None else int(value)
