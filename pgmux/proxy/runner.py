"""Running the pooler in this process: event loop, signals, janitor, file limits, workers.

``run(config)`` blocks until shutdown. SIGHUP reloads the config, SIGINT and SIGTERM shut down
gracefully (stop accepting, let transactions finish up to shutdown_timeout), a second SIGINT or
SIGTERM forces the end. With ``workers = N`` the parent forks N children that share the listen
port through SO_REUSEPORT.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import shutil
import signal
import sys
import tempfile
import time

from pgmux.config import Config
from pgmux.proxy.maintenance import janitor
from pgmux.proxy.pooler import Pooler

log = logging.getLogger("pgmux")


def raise_file_limit(max_client_conn: int, pool_hint: int) -> None:
    """Raise RLIMIT_NOFILE toward what max_client_conn needs, and say so if it can't."""
    wanted = max_client_conn + pool_hint + 64
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < wanted:
        log.warning(
            "max_client_conn = %d needs about %d open files but the limit is %d "
            "(raise it with ulimit -n or LimitNOFILE=); clients beyond it will be refused",
            max_client_conn,
            wanted,
            target,
        )
    else:
        log.info("raised the open file limit from %d to %d", soft, target)


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:
        log.info("uvloop is not installed; using the standard asyncio event loop")
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop


class StartupError(Exception):
    """pgmux could not start serving (the port is taken, the socket directory is missing...)."""


async def serve(config: Config) -> None:
    loop = asyncio.get_running_loop()
    pooler = Pooler(config, loop)
    for warning in config.warnings:
        log.warning("%s", warning)
    # Before listening: whoever sees the port open may signal at once, and an unhandled
    # SIGHUP would kill the process.
    _handle_signals(loop, pooler)
    try:
        await pooler.listen()
    except OSError as exc:
        pooler.stop_listening()
        raise StartupError(f"cannot listen: {exc}") from None
    addr = config.get_str("listen_addr")
    log.info(
        "listening on %s:%d%s",
        addr,
        config.get_int("listen_port"),
        f" and {config.get_str('unix_socket_dir')}" if config.get_str("unix_socket_dir") else "",
    )
    maintenance = loop.create_task(janitor(pooler))
    await pooler.lifecycle.stopped.wait()
    maintenance.cancel()


def _handle_signals(loop: asyncio.AbstractEventLoop, pooler: Pooler) -> None:
    """SIGHUP reloads; SIGINT and SIGTERM shut down gracefully, a second one at once."""
    signals = 0

    def on_stop() -> None:
        nonlocal signals
        signals += 1
        if signals == 1:
            pooler.lifecycle.request_shutdown(graceful=True)
        else:
            loop.create_task(pooler.lifecycle.shutdown(graceful=False))

    def on_reload() -> None:
        try:
            pooler.lifecycle.reload()
        except Exception as exc:
            log.error("reload failed, keeping the old config: %s", exc)

    loop.add_signal_handler(signal.SIGINT, on_stop)
    loop.add_signal_handler(signal.SIGTERM, on_stop)
    loop.add_signal_handler(signal.SIGHUP, on_reload)


def run(config: Config) -> int:
    raise_file_limit(config.get_int("max_client_conn"), config.get_int("default_pool_size"))
    workers = config.get_int("workers")
    if workers > 1:
        return _run_workers(config, workers)
    return _run_one(config)


def _run_one(config: Config) -> int:
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(config))
    finally:
        loop.close()
    return 0


def _run_workers(config: Config, workers: int) -> int:
    """Fork ``workers`` processes sharing the port; the parent forwards signals and waits."""
    config.settings["so_reuseport"] = True
    # Each worker also listens on a private unix socket here, so that a CancelRequest that
    # SO_REUSEPORT hands to the wrong worker can be passed to the one that owns the client.
    cancel_dir = tempfile.mkdtemp(prefix="pgmux-workers-")
    children: list[int] = []
    for index in range(workers):
        pid = os.fork()
        if pid == 0:
            os.environ["PGMUX_WORKER"] = str(index)
            os.environ["PGMUX_WORKERS"] = str(workers)
            os.environ["PGMUX_WORKER_DIR"] = cancel_dir
            os._exit(_run_child(config, index))
        children.append(pid)

    def forward(signum: int, frame: object) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signum)

    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, forward)
    status = 0
    for child in children:
        _, code = os.waitpid(child, 0)
        status = status or os.waitstatus_to_exitcode(code)
    shutil.rmtree(cancel_dir, ignore_errors=True)
    return status


def _run_child(config: Config, index: int) -> int:
    """A worker's life; nothing may escape it into the parent's code that fork copied."""
    try:
        return _run_one(config)
    except StartupError as exc:
        log.error("worker %d: %s", index, exc)
    except Exception:
        log.exception("worker %d failed", index)
    return 1


class _Formatter(logging.Formatter):
    """PgBouncer-like lines; the timestamp is formatted once per second, not per line."""

    _second = -1
    _stamp = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
        return f"{self._stamp}.{int(record.msecs):03d}"


def configure_logging(verbose: int, logfile: str = "") -> None:
    # With log_connections on, every login writes lines: skip what no line of ours shows.
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no stack walk to find the caller's file and line
    level = logging.DEBUG if verbose > 0 else logging.INFO
    handler: logging.Handler = (
        logging.FileHandler(logfile) if logfile else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(_Formatter("%(asctime)s %(process)d %(levelname)s %(message)s"))
    root = logging.getLogger("pgmux")
    root.handlers[:] = [handler]
    root.setLevel(level)
