"""The benchmark suite: parsing of pgbench output, /proc readings, config generation, the report.

All fast and offline except the last test, a short real run marked slow.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import os
import shutil
import struct
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from pgmux.bench import command, main, procstat
from pgmux.bench.chart import series, write_tps_chart
from pgmux.bench.database import extract_secret
from pgmux.bench.idle import Credentials, hold_idle, md5_password, startup_message
from pgmux.bench.options import parse_args
from pgmux.bench.pgbench import (
    count_failures,
    error_line,
    log_latencies_us,
    p99_from_logs,
    parse_summary,
    percentile,
    pgbench_argv,
    retry_duration,
    run_duration,
)
from pgmux.bench.progress import Progress, bar
from pgmux.bench.report import (
    MAIN_HEADERS,
    NotRun,
    Report,
    added_latency,
    format_table,
    idle_cells,
    main_rows,
    pgbench_cells,
    render,
    to_json,
)
from pgmux.bench.results import IdleResult, RunResult
from pgmux.bench.runner import (
    applicable,
    max_connections,
    rotated,
    total_steps,
)
from pgmux.bench.targets import (
    PoolSettings,
    find_pgbouncer,
    listening_sockets,
    log_tail,
    make_run_dir,
    render_ini,
    start_pooler,
    write_pgbouncer_inis,
)
from pgmux.bench.workloads import WORKLOADS, select_workloads, unsupported_reason
from pgmux.testing import free_port

SELECT_OUTPUT = """\
pgbench (15.18 (Debian 15.18-0+deb12u1))
transaction type: <builtin: select only>
scaling factor: 10
query mode: simple
number of clients: 4
number of threads: 2
maximum number of tries: 1
duration: 2 s
number of transactions actually processed: 32045
number of failed transactions: 0 (0.000%)
latency average = 0.247 ms
initial connection time = 26.749 ms
tps = 16206.762790 (without initial connection time)
"""

CONNECT_OUTPUT = """\
number of transactions actually processed: 250
number of failed transactions: 3 (1.200%)
latency average = 32.164 ms
average connection time = 15.690 ms
tps = 124.364002 (including reconnection times)
"""

ABORTED_STDERR = """\
pgbench: error: client 0 script 0 aborted in command 0 query 0: ERROR:  division by zero
pgbench: error: client 1 script 0 aborted in command 0 query 0: ERROR:  division by zero
pgbench: error: Run was aborted; the above results are incomplete.
"""


# -- pgbench output -------------------------------------------------------------------------------


def test_parse_summary_of_a_plain_run() -> None:
    summary = parse_summary(SELECT_OUTPUT, "")
    assert summary.tps == pytest.approx(16206.762790)
    assert summary.latency_ms == pytest.approx(0.247)
    assert (summary.failed_transactions, summary.aborted_clients) == (0, 0)
    assert summary.transactions == 32045


def test_parse_summary_with_reconnects_takes_the_including_figure() -> None:
    summary = parse_summary(CONNECT_OUTPUT, "")
    assert summary.tps == pytest.approx(124.364002)
    assert summary.failed_transactions == 3


def test_aborted_run_has_no_figures_and_counts_clients_as_failures() -> None:
    stdout = "number of transactions actually processed: 0\nnumber of failed transactions: 0\n"
    summary = parse_summary(stdout, ABORTED_STDERR)
    assert summary.tps is None and summary.latency_ms is None
    assert summary.aborted_clients == 2
    assert count_failures(summary, returncode=2) == 2
    assert summary.transactions == 0
    assert parse_summary("", "").transactions is None


def test_a_failing_exit_counts_as_a_failure_even_without_details() -> None:
    assert count_failures(parse_summary(SELECT_OUTPUT, ""), returncode=0) == 0
    assert count_failures(parse_summary("", ""), returncode=1) == 1


def test_error_line_picks_the_first_error() -> None:
    stderr = 'pgbench: error: connection to server at "127.0.0.1", port 1 failed\nmore\n'
    assert error_line(stderr).startswith("pgbench: error: connection to server")
    assert error_line("") == "pgbench failed without a message"


def test_log_latencies_skip_failed_and_skipped_transactions() -> None:
    lines = ["0 1 1102 0 1795386124 243335", "0 2 failed 0 1795386124 243489", "1 1 125 0 1 2", ""]
    assert log_latencies_us(lines) == [1102, 125]


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7], 0.99) == 7
    assert percentile([], 0.99) is None


def test_p99_over_every_thread_log(tmp_path: Path) -> None:
    (tmp_path / "tx.123").write_text("".join(f"0 {i} {i * 1000} 0 0 0\n" for i in range(1, 51)))
    (tmp_path / "tx.123.1").write_text("".join(f"1 {i} {i * 1000} 0 0 0\n" for i in range(51, 101)))
    assert p99_from_logs(tmp_path) == pytest.approx(99.0)


def test_pgbench_argv(tmp_path: Path) -> None:
    argv = pgbench_argv(
        "pgbench", host="h", port=5, user="u", dbname="d", clients=500, duration=13, threads=2,
        workload_args=["-S", "-C"], log_prefix=tmp_path / "tx",
    )  # fmt: skip
    assert argv[argv.index("-T") + 1] == "13"
    assert argv[argv.index("-c") + 1] == "500"
    assert argv[-3:] == ["-S", "-C", "d"]
    assert "-n" in argv and "-l" in argv


def test_runs_with_many_clients_get_time_to_connect() -> None:
    assert run_duration(10, 20) == 10
    assert run_duration(10, 500) > 10


def test_a_run_that_spent_itself_connecting_is_retried_longer() -> None:
    assert parse_summary(SELECT_OUTPUT, "").connect_ms == pytest.approx(26.749)
    fine = parse_summary(SELECT_OUTPUT, "")
    assert retry_duration(fine, duration=3, seconds=3) is None
    slow = parse_summary(SELECT_OUTPUT.replace("26.749 ms", "8200.0 ms"), "")
    assert retry_duration(slow, duration=9, seconds=3) == 3 + 13
    nothing = parse_summary("number of transactions actually processed: 0\n", "")
    assert retry_duration(nothing, duration=9, seconds=3) == 3 + 14
    reconnecting = parse_summary(CONNECT_OUTPUT, "")
    assert retry_duration(reconnecting, duration=3, seconds=3) is None


# -- /proc ----------------------------------------------------------------------------------------


def test_parse_stat_survives_a_command_name_with_spaces_and_parentheses() -> None:
    fields = ["S", "42"] + ["0"] * 9 + ["300", "45"] + ["0"] * 30
    text = "1234 (we ird) (name) " + " ".join(fields)
    assert procstat.parse_stat(text) == (42, 345)


def test_parse_vmrss() -> None:
    assert procstat.parse_vmrss_kb("Name:\tx\nVmRSS:\t  8624 kB\n") == 8624
    assert procstat.parse_vmrss_kb("Name:\tzombie\n") == 0


def test_process_tree_and_readings_of_this_process() -> None:
    tree = procstat.process_tree(os.getpid())
    assert tree[0] == os.getpid()
    assert procstat.cpu_seconds(os.getpid()) > 0
    assert procstat.rss_kb(os.getpid()) > 1000


# -- configuration --------------------------------------------------------------------------------


def _pool(tmp_path: Path) -> PoolSettings:
    return PoolSettings(
        pg_host="127.0.0.1", pg_port=5432, dbname="bench", auth_type="md5",
        auth_file=tmp_path / "userlist.txt", pool_size=20, max_client_conn=1000,
        socket_dir=tmp_path,
    )  # fmt: skip


def _ini_lines(text: str) -> set[str]:
    return {line for line in text.splitlines() if line.strip()}


def test_both_poolers_get_the_same_ini_but_for_port_pidfile_logfile_and_workers(
    tmp_path: Path,
) -> None:
    pool = _pool(tmp_path)
    bouncer = render_ini(pool, name="pgbouncer", port=6001, run_dir=tmp_path, workers=1)
    mux = render_ini(pool, name="pgmux", port=6002, run_dir=tmp_path, workers=1)
    differing = _ini_lines(bouncer) ^ _ini_lines(mux)
    assert {line.split(" = ")[0] for line in differing} == {
        "listen_port", "pidfile", "logfile", "workers",
    }  # fmt: skip
    assert "workers = 1" in mux and "workers" not in bouncer
    for line in ("pool_mode = transaction", "default_pool_size = 20", "auth_type = md5"):
        assert line in bouncer
    assert "bench = host=127.0.0.1 port=5432 dbname=bench" in bouncer
    assert "so_reuseport" not in bouncer


def test_workers_become_pgbouncer_processes_sharing_the_port(tmp_path: Path) -> None:
    pool = _pool(tmp_path)
    mux = render_ini(pool, name="pgmux", port=6002, run_dir=tmp_path, workers=2)
    assert "workers = 2" in mux and f"pidfile = {tmp_path / 'pgmux.pid'}" in mux
    first, second = (
        render_ini(pool, name="pgbouncer", port=6001, run_dir=tmp_path, workers=2, process=n)
        for n in (0, 1)
    )
    assert {line.split(" = ")[0] for line in _ini_lines(first) ^ _ini_lines(second)} == {
        "pidfile", "logfile", "unix_socket_dir",
    }  # fmt: skip
    for number, text in enumerate((first, second)):
        assert "listen_port = 6001" in text and "so_reuseport = 1" in text
        assert f"pidfile = {tmp_path / f'pgbouncer-{number}.pid'}" in text
        assert f"unix_socket_dir = {tmp_path / f'pgbouncer-{number}'}" in text


PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1771 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 1 1
   1: 0100007F:1771 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 2 1
   2: 0100007F:1771 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000   108        0 3 1
   3: 0100007F:1772 00000000:0000 0A 00000000:00000000 00:00000000 00000000   108        0 4 1
"""


def test_listening_sockets_counts_listeners_on_the_port_only(tmp_path: Path) -> None:
    table = tmp_path / "tcp"
    table.write_text(PROC_NET_TCP)
    assert listening_sockets(6001, table) == 2  # 0x1771; the established one does not count
    assert listening_sockets(6002, table) == 1
    assert listening_sockets(5432, table) == 0


@pytest.mark.slow
def test_pgbouncer_with_two_workers_runs_two_processes_on_one_port() -> None:
    binary = find_pgbouncer()
    if binary is None:
        pytest.skip("PgBouncer is not installed (.ci/run installs it)")
    # As the bench does: under root PgBouncer runs as postgres, which cannot enter pytest's
    # tmp_path; a directory of its own under /tmp it can.
    work = Path(tempfile.mkdtemp(prefix="pgmux-bench-test-"))
    work.chmod(0o755)
    try:
        _two_pgbouncer_processes(binary, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _two_pgbouncer_processes(binary: str, work: Path) -> None:
    run_dir = make_run_dir(work, "run")
    pool = replace(_pool(work), socket_dir=run_dir)
    (work / "userlist.txt").write_text('"bench" "secret"\n')
    port = free_port()
    inis = write_pgbouncer_inis(pool, port=port, run_dir=run_dir, workers=2)
    assert [ini.name for ini in inis] == ["pgbouncer-0.ini", "pgbouncer-1.ini"]
    pooler = start_pooler("pgbouncer", [[binary, str(i)] for i in inis], port=port, run_dir=run_dir)
    try:
        assert len(pooler.processes) == 2 and pooler.exit_status() is None
        assert listening_sockets(port) == 2
        assert pooler.cpu_seconds() >= 0 and pooler.rss_kb() > 0
    finally:
        pooler.stop()
    assert all(p.poll() is not None for p in pooler.processes)


def test_extract_secret_ignores_psql_decoration() -> None:
    output = " rolpassword \n-------\n md576dfd53a37fd4a65648707c42f2f4b5d\n(1 row)\n"
    assert extract_secret(output) == "md576dfd53a37fd4a65648707c42f2f4b5d"
    assert extract_secret("SCRAM-SHA-256$4096:abc$def:ghi\n").startswith("SCRAM-SHA-256$4096")


def test_log_tail_shows_the_end_of_each_log(tmp_path: Path) -> None:
    log = tmp_path / "pgmux.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    tail = log_tail([log, tmp_path / "missing.log"], lines=3)
    assert "line 99" in tail and "line 97" in tail and "line 96" not in tail
    assert log_tail([tmp_path / "missing.log"]) == "  (it wrote no log)"


# -- workloads and options ------------------------------------------------------------------------


def test_select_workloads() -> None:
    assert [w.name for w in select_workloads([])] == [w.name for w in WORKLOADS]
    assert [w.name for w in select_workloads(["large", "select"])] == ["select", "large"]
    with pytest.raises(ValueError, match="unknown workload"):
        select_workloads(["nope"])


def test_prepared_is_not_run_on_old_pgbouncer() -> None:
    prepared = select_workloads(["prepared"])[0]
    assert unsupported_reason(prepared, "pgbouncer", (1, 18, 0)) is not None
    assert unsupported_reason(prepared, "pgbouncer", (1, 24, 1)) is None
    assert unsupported_reason(prepared, "pgmux", (1, 18, 0)) is None
    idle = select_workloads(["idle"])[0]
    runs, gaps = applicable(idle, ("direct", "pgbouncer", "pgmux"), (1, 18))
    assert runs == ("pgbouncer", "pgmux") and [g.target for g in gaps] == ["direct"]


def test_options_take_comma_lists_and_repeats() -> None:
    opts = parse_args(["--workload", "select,tpcb", "--workload", "idle", "--clients", "1,20",
                       "--clients", "5", "--targets", "direct,pgmux", "--rounds", "2"])  # fmt: skip
    assert [w.name for w in opts.workloads] == ["select", "tpcb", "idle"]
    assert opts.clients == (1, 5, 20)
    assert opts.targets == ("direct", "pgmux")
    assert opts.client_counts(opts.workloads[0]) == (1, 5, 20)
    defaults = parse_args([])
    assert (defaults.rounds, defaults.seconds) == (3, 10)
    assert (defaults.pool_size, defaults.workers) == (20, 1)
    assert defaults.targets == ("direct", "pgbouncer", "pgmux")
    assert parse_args(["--no-pgbouncer"]).targets == ("direct", "pgmux")


@pytest.mark.parametrize(
    "argv", [["--workload", "nope"], ["--targets", "mysql"], ["--rounds", "0"], ["--clients", "x"]]
)
def test_bad_options_exit_with_usage(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        parse_args(argv)
    assert exc.value.code == 2


def test_rounds_rotate_the_target_order() -> None:
    targets = ("a", "b", "c")
    assert [rotated(targets, r) for r in (1, 2, 3, 4)] == [
        ("a", "b", "c"), ("b", "c", "a"), ("c", "a", "b"), ("a", "b", "c"),
    ]  # fmt: skip


def test_sizes_follow_the_options() -> None:
    opts = parse_args(["--workload", "select,prepared,idle", "--rounds", "2"])
    # select: 4 client counts x 3 targets; prepared: no PgBouncer 1.18; idle: no direct.
    assert total_steps(opts, opts.targets, (1, 18)) == 2 * (4 * 3 + 1 * 2 + 1 * 2)
    assert max_connections(opts) >= 505
    assert max_connections(parse_args(["--clients", "1"])) == 100


# -- report ---------------------------------------------------------------------------------------


def _run(target: str, clients: int, tps: float, latency: float, rnd: int = 1) -> RunResult:
    cpu = None if target == "direct" else 1.0
    return RunResult("select", target, clients, rnd, tps, latency, latency * 2, 0, cpu)


def _report() -> Report:
    runs = [
        _run("direct", 1, 1000, 0.10), _run("pgbouncer", 1, 800, 0.12), _run("pgmux", 1, 400, 0.16),
        _run("direct", 1, 1200, 0.10, 2), _run("pgbouncer", 1, 900, 0.13, 2),
        _run("pgmux", 1, 500, 0.20, 2),
        RunResult("prepared", "direct", 20, 1, 5000, 1.0, 2.0, 0, None),
        RunResult("prepared", "pgmux", 20, 1, 2500, 2.0, 4.0, 3, 2.5),
    ]  # fmt: skip
    report = Report(meta={"rounds": 2}, runs=runs)
    report.idle_runs = [
        IdleResult("idle", "pgbouncer", 1000, 1, 1000, 8000, 9000),
        IdleResult("idle", "pgmux", 1000, 1, 1000, 20000, 24000),
    ]
    report.not_run = [NotRun("prepared", "pgbouncer", "too old"), NotRun("idle", "direct", "no")]
    report.notes = ["a note"]
    return report


def test_cells_take_medians_and_sum_failures() -> None:
    cells = pgbench_cells(_report().runs)
    first = cells[0]
    assert (first.workload, first.clients, first.target) == ("select", 1, "direct")
    assert first.tps == 1100 and first.rounds == 2 and first.pooler_cpu_s is None
    pgmux = next(c for c in cells if c.target == "pgmux" and c.workload == "select")
    assert pgmux.tps == 450 and pgmux.latency_ms == pytest.approx(0.18)
    assert [c.target for c in cells if c.workload == "select"] == ["direct", "pgbouncer", "pgmux"]
    assert next(c for c in cells if c.workload == "prepared" and c.target == "pgmux").failed == 3


def test_cpu_per_transaction_is_the_pooler_cpu_over_pgbench_transactions() -> None:
    run = RunResult("select", "pgmux", 20, 1, 10000, 2.0, 4.0, 0, 1.5, transactions=60000)
    assert run.cpu_us_per_transaction == pytest.approx(25.0)
    assert replace(run, pooler_cpu_s=None).cpu_us_per_transaction is None  # direct: no pooler
    assert replace(run, transactions=0).cpu_us_per_transaction is None  # every client aborted
    again = replace(run, round=2, pooler_cpu_s=3.0)
    cell = pgbench_cells([run, again])[0]
    assert cell.cpu_us_per_transaction == pytest.approx(37.5)  # the median over rounds
    row = main_rows([cell], [])[0]
    assert row[MAIN_HEADERS.index("CPU µs/txn")] == "37.5"


def test_ratios_sit_on_pgmux_rows_and_not_run_rows_follow_their_workload() -> None:
    report = _report()
    rows = main_rows(pgbench_cells(report.runs), report.not_run)
    by_target = {(r[0], r[2]): r for r in rows}
    # The median ratio, its lowest and highest round (400/800 and 500/900), and vs direct.
    assert by_target[("select", "pgmux")][-3:] == [
        f"{450 / 850:.2f}",
        "0.50..0.56",
        f"{450 / 1100:.2f}",
    ]
    assert by_target[("select", "pgbouncer")][-3:] == ["", "", ""]
    assert by_target[("prepared", "pgmux")][-3:] == ["-", "", "0.50"]  # one round, no PgBouncer
    assert rows[-1][:4] == ["prepared", "", "pgbouncer", "n/a"]
    assert ("idle", "direct") not in by_target


def test_added_latency_at_one_client() -> None:
    added = added_latency(pgbench_cells(_report().runs))
    assert added is not None
    assert added.pgmux_ms == pytest.approx(0.08)
    assert added.pgbouncer_ms == pytest.approx(0.025)
    assert added.ratio == pytest.approx(3.2)
    assert added_latency([]) is None


def test_idle_cells_per_connection() -> None:
    cells = idle_cells(_report().idle_runs)
    assert [(c.target, c.per_conn_kb) for c in cells] == [("pgbouncer", 1.0), ("pgmux", 4.0)]


def test_render_text_and_markdown() -> None:
    report = _report()
    text = render(report)
    assert "pgmux/pgbouncer" in text and "Added latency at 1 client" in text
    assert "prepared on pgbouncer: not run: too old" in text and "a note" in text
    assert "KB per conn" in text
    markdown = render(report, markdown=True)
    assert markdown.startswith("# pgmux benchmark results")
    assert "| workload" in markdown and "- a note" in markdown


def test_render_lists_runs_that_could_not_start() -> None:
    report = Report(meta={}, runs=[RunResult("tpcb", "pgmux", 20, 1, None, None, None, 1, 0.0,
                                             "pgbench: error: connection refused")])  # fmt: skip
    assert "tpcb c=20 pgmux round 1 failed: pgbench: error: connection refused" in render(report)


def test_json_holds_runs_and_medians() -> None:
    data = json.loads(json.dumps(to_json(_report())))
    assert data["meta"] == {"rounds": 2}
    assert len(data["runs"]) == 8 and data["runs"][0]["tps"] == 1000
    assert data["added_latency_1_client"]["ratio"] == pytest.approx(3.2)
    assert data["idle"][1]["per_conn_kb"] == 4.0
    assert data["idle_runs"][0]["per_conn_kb"] == 1.0


def test_format_table_aligns_numbers_right() -> None:
    table = format_table(["name", "tps"], [["a", "5"], ["bb", "100"]], markdown=False)
    assert table.splitlines() == ["name  tps", "----  ---", "a       5", "bb    100"]
    markdown = format_table(["name", "tps"], [["a", "5"]], markdown=True)
    assert markdown.splitlines()[0] == "| name | tps |"


# -- chart and progress ---------------------------------------------------------------------------


def test_chart_series_per_target() -> None:
    lines = series(pgbench_cells(_report().runs))
    assert list(lines) == ["direct", "pgbouncer", "pgmux"]
    assert lines["pgmux"] == [(1, 450)]


def test_chart_skipped_without_select(tmp_path: Path) -> None:
    message = write_tps_chart([], tmp_path / "tps.png")
    assert "skipped" in message and not (tmp_path / "tps.png").exists()


def test_chart_written(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    message = write_tps_chart(pgbench_cells(_report().runs), tmp_path / "tps.png")
    assert message.startswith("wrote")
    assert (tmp_path / "tps.png").read_bytes()[:4] == b"\x89PNG"


def test_progress_lines_when_not_a_terminal() -> None:
    stream = io.StringIO()
    progress = Progress(4, stream)
    progress.start("select c=20 pgmux round 2")
    progress.advance()
    progress.start("next")
    assert stream.getvalue().splitlines() == [
        f"{bar(0, 4)} 1/4 select c=20 pgmux round 2",
        f"{bar(1, 4)} 2/4 next",
    ]
    assert bar(1, 4, width=8) == "[##......]"


# -- idle clients ---------------------------------------------------------------------------------


def test_md5_response_matches_a_secret_postgresql_stored() -> None:
    # pg_authid held md576dfd53a37fd4a65648707c42f2f4b5d for role bench_md5, password benchpw.
    salt = b"\x01\x02\x03\x04"
    expected = "md5" + hashlib.md5(b"76dfd53a37fd4a65648707c42f2f4b5d" + salt).hexdigest()
    assert md5_password("bench_md5", "benchpw", salt) == expected


def test_startup_message_layout() -> None:
    message = startup_message("u", "db")
    assert struct.unpack_from("!II", message) == (len(message), 196608)
    assert message.endswith(b"user\0u\0database\0db\0\0")


class FakeServer:
    """Asks for md5, then says AuthenticationOk and ReadyForQuery, or refuses the login."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse = refuse
        self.logins = 0
        self.writers: list[asyncio.StreamWriter] = []

    async def close(self) -> None:
        """Close every server-side connection, so that none outlives the event loop."""
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*(w.wait_closed() for w in self.writers), return_exceptions=True)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writers.append(writer)
        (length,) = struct.unpack("!I", await reader.readexactly(4))
        await reader.readexactly(length - 4)
        writer.write(b"R" + struct.pack("!II", 12, 5) + b"salt")
        kind = await reader.readexactly(1)
        (length,) = struct.unpack("!I", await reader.readexactly(4))
        password = (await reader.readexactly(length - 4)).rstrip(b"\0").decode()
        assert kind == b"p" and password == md5_password("u", "pw", b"salt")
        if self.refuse:
            body = b"SFATAL\0C28P01\0Mno such luck\0\0"
            writer.write(b"E" + struct.pack("!I", 4 + len(body)) + body)
        else:
            self.logins += 1
            writer.write(b"R" + struct.pack("!II", 8, 0) + b"Z" + struct.pack("!I", 5) + b"I")
        await writer.drain()
        await reader.read()  # until the client goes
        writer.close()


@pytest.fixture
def fake_server() -> Iterator[tuple[FakeServer, int]]:
    """A FakeServer on its own event loop thread, so hold_idle can run its own loop."""
    loop = asyncio.new_event_loop()
    fake = FakeServer()
    server = loop.run_until_complete(asyncio.start_server(fake.handle, "127.0.0.1", 0))
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield fake, server.sockets[0].getsockname()[1]
    finally:

        async def shut_down() -> None:
            server.close()
            await fake.close()

        asyncio.run_coroutine_threadsafe(shut_down(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.run_until_complete(server.wait_closed())
        loop.close()


def test_hold_idle_logs_in_and_samples_while_open(fake_server: tuple[FakeServer, int]) -> None:
    fake, port = fake_server
    creds = Credentials("127.0.0.1", port, "u", "pw", "db")
    assert hold_idle(creds, 5, lambda: fake.logins, settle_s=0) == (5, 5, None)


def test_hold_idle_reports_a_refused_login(fake_server: tuple[FakeServer, int]) -> None:
    fake, port = fake_server
    fake.refuse = True
    opened, _, error = hold_idle(Credentials("127.0.0.1", port, "u", "pw", "db"), 3, lambda: 0, 0)
    assert opened == 0 and error == "LoginError: no such luck"


# -- end to end -----------------------------------------------------------------------------------


def _short_run(out: Path, *extra: str) -> dict[str, dict[str, object]]:
    """One 2-second `select` round at 1 client; its cells by target."""
    if shutil.which("pgbench") is None:
        pytest.skip("pgbench is not installed")
    argv = ["--workload", "select", "--rounds", "1", "--seconds", "2", "--clients", "1",
            "--scale", "1", "--out", str(out), *extra]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    return {c["target"]: c for c in results["cells"]}


@pytest.mark.slow
def test_one_short_round_skips_pgbouncer_with_a_clear_line_when_it_is_missing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(command, "find_pgbouncer", lambda: None)  # a machine without it
    out = tmp_path / "results"
    cells = _short_run(out)  # the default targets: direct, pgbouncer, pgmux
    assert set(cells) == {"direct", "pgmux"}
    for cell in cells.values():
        assert cell["tps"] > 0 and cell["failed"] == 0
    assert cells["pgmux"]["pooler_cpu_s"] > 0
    assert cells["pgmux"]["cpu_us_per_transaction"] > 0
    assert cells["direct"]["cpu_us_per_transaction"] is None
    stdout = capsys.readouterr().out
    assert "select" in stdout
    line = "PgBouncer is not installed: its columns are skipped; `apt-get install -y pgbouncer`"
    assert line in stdout and line in (out / "results.md").read_text()


@pytest.mark.slow
def test_one_short_round_side_by_side_with_pgbouncer_and_two_workers_each(tmp_path: Path) -> None:
    if find_pgbouncer() is None:
        pytest.skip("PgBouncer is not installed (.ci/run installs it)")
    targets = ("--targets", "direct,pgbouncer,pgmux")
    cells = _short_run(tmp_path / "results", *targets, "--workers", "2")
    assert set(cells) == {"direct", "pgbouncer", "pgmux"}
    for target in ("pgbouncer", "pgmux"):
        assert cells[target]["tps"] > 0 and cells[target]["failed"] == 0
        assert cells[target]["cpu_us_per_transaction"] > 0


def test_chart_skipped_with_a_clear_line_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now fails
    message = write_tps_chart(pgbench_cells(_report().runs), tmp_path / "tps.png")
    assert message == "tps.png skipped: matplotlib is not installed (pip install 'pgmux[bench]')"
    assert not (tmp_path / "tps.png").exists()


def _hotpath_module() -> object:
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "hotpath.py"
    spec = importlib.util.spec_from_file_location("pgmux_bench_hotpath", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_hotpath_harness_relays_each_transaction_with_one_write_each_way() -> None:
    # The harness behind `benchmarks/hotpath.py` must drive the real forwarding path: every
    # transaction is one write to the server and one to the client, and the transaction-mode
    # server goes back to the pool after each ReadyForQuery.
    result = _hotpath_module().run(50)  # type: ignore[attr-defined]
    assert (result.client_writes, result.server_writes) == (50, 50)
    assert result.released


def test_hotpath_login_harness_logs_every_client_in() -> None:
    # `benchmarks/hotpath.py --login` must go through the whole md5 login each time: the
    # password is checked (a wrong one would end in an error, not AuthenticationOk) and the
    # client reaches the forwarding phase.
    result = _hotpath_module().run_logins(20)  # type: ignore[attr-defined]
    assert (result.logins, result.welcomed) == (20, 20)
