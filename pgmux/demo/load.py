"""The demo's HTTP load generator: many concurrent clients on asyncio streams.

Standard library only, loopback only. Each client sends the shop's typical mix (mostly product
pages, some listings and customer pages, one order in ten) until the deadline, one connection
per request, as nginx talks to an upstream by default. Keep-alive would pin each client to the
gunicorn worker that happened to accept it first, and leave some workers idle.

A 5xx response's JSON ``error`` text (the example project sends the exception's text) or a
connection failure is recorded as an error; the first error text is kept so the report can say
*why* requests failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

__all__ = ["LoadResult", "Request", "run_load", "shop_mix"]

REQUEST_TIMEOUT = 30.0  # psycopg_pool's default checkout timeout, so its errors show up


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: bytes = b""


@dataclass
class LoadResult:
    seconds: float = 0.0
    ok: int = 0
    errors: int = 0
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    first_error: str = ""
    error_kinds: dict[str, int] = field(default_factory=dict)

    def record_error(self, text: str) -> None:
        self.errors += 1
        text = " ".join(text.split())[:300]
        self.first_error = self.first_error or text
        kind = _error_kind(text)
        self.error_kinds[kind] = self.error_kinds.get(kind, 0) + 1


def _error_kind(text: str) -> str:
    lowered = text.lower()
    for marker in ("too many clients", "timeout", "timed out", "refused", "reset"):
        if marker in lowered:
            return marker
    return text.split(":", 1)[0][:40]


def shop_mix(rng: random.Random, products: int = 1000, customers: int = 200) -> Request:
    roll = rng.random()
    if roll < 0.55:
        return Request("GET", f"/products/{rng.randint(1, products)}/")
    if roll < 0.75:
        return Request("GET", f"/products/?page={rng.randrange(products // 20)}")
    if roll < 0.9:
        return Request("GET", f"/customers/{rng.randint(1, customers)}/orders/")
    body = json.dumps(
        {"customer": rng.randint(1, customers), "product": rng.randint(1, products), "quantity": 1}
    ).encode()
    return Request("POST", "/orders/", body)


def _encode(request: Request, host: str, port: int) -> bytes:
    head = (
        f"{request.method} {request.path} HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n"
    )
    if request.body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(request.body)}\r\n"
    return head.encode() + b"\r\n" + request.body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, keep_alive) of one HTTP/1.1 response with a Content-Length."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, body, headers.get("connection", "").lower() != "close"


def _error_text(status: int, body: bytes) -> str:
    try:
        return f"HTTP {status}: {json.loads(body)['error']}"
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}: {body[:200].decode('utf-8', 'replace')}"


async def _exchange(host: str, port: int, request: Request) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(_encode(request, host, port))
        status, body, _ = await _response(reader)
        return status, body
    finally:
        writer.close()


async def _client(
    host: str,
    port: int,
    deadline: float,
    seed: int,
    next_request: Callable[[random.Random], Request],
    result: LoadResult,
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        request = next_request(rng)
        started = time.monotonic()
        try:
            status, body = await asyncio.wait_for(_exchange(host, port, request), REQUEST_TIMEOUT)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            result.record_error(f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)  # do not spin on a refused connection
            continue
        if status >= 500:
            result.record_error(_error_text(status, body))
        else:
            result.ok += 1
            result.latencies.append(time.monotonic() - started)


async def run_load(
    host: str,
    port: int,
    *,
    clients: int,
    seconds: float,
    on_tick: Callable[[float, LoadResult], None] | None = None,
    next_request: Callable[[random.Random], Request] = shop_mix,
) -> LoadResult:
    """Run ``clients`` concurrent clients for ``seconds``; ``on_tick(elapsed, so_far)`` twice a
    second. Requests still running at the deadline get a grace period, then are abandoned.

    SIGINT or SIGTERM stops the clients in order, then raises KeyboardInterrupt, so that the
    caller's cleanup runs without tasks being torn down mid-request.
    """
    result = LoadResult()
    start = time.monotonic()
    deadline = start + seconds
    tasks = [
        asyncio.create_task(_client(host, port, deadline, seed, next_request, result))
        for seed in range(clients)
    ]
    with _interruptible() as interrupted:
        try:
            await _tick_until(deadline, start, interrupted, on_tick, result)
            if not interrupted.is_set():
                await asyncio.wait(tasks, timeout=REQUEST_TIMEOUT + 1)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
    if interrupted.is_set():
        raise KeyboardInterrupt
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            result.record_error(f"load client crashed: {outcome!r}")
    result.seconds = time.monotonic() - start
    return result


async def _tick_until(
    deadline: float,
    start: float,
    interrupted: asyncio.Event,
    on_tick: Callable[[float, LoadResult], None] | None,
    result: LoadResult,
) -> None:
    while time.monotonic() < deadline and not interrupted.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(interrupted.wait(), min(0.5, deadline - time.monotonic()))
        if on_tick is not None:
            on_tick(time.monotonic() - start, result)


@contextlib.contextmanager
def _interruptible() -> Iterator[asyncio.Event]:
    """An event set by SIGINT/SIGTERM while the block runs; the old handlers come back after."""
    loop = asyncio.get_running_loop()
    event = asyncio.Event()
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    installed = []
    for sig in signals:
        # Not on Windows, nor outside the main thread; Ctrl-C then interrupts the hard way.
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, event.set)
            installed.append(sig)
    try:
        yield event
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
            # remove_signal_handler resets to the default, not to what was there before.
            if previous[sig] is not None:
                signal.signal(sig, previous[sig])
