"""The example project under real servers through pgmux: gunicorn (WSGI, threads) and uvicorn
(ASGI, async views and async ORM calls); concurrent requests, the health view, and query tags
arriving at PostgreSQL."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest
from django_support import PROJECT, DjangoEnv

from pgmux.testing import free_port

SERVERS = {
    "gunicorn": [
        "-m",
        "gunicorn",
        "djangoapp.wsgi:application",
        "--workers",
        "2",
        "--threads",
        "4",
        "--worker-class",
        "gthread",
        "--log-level",
        "warning",
    ],
    "uvicorn": [
        "-m",
        "uvicorn",
        "djangoapp.asgi:application",
        "--log-level",
        "warning",
        "--no-access-log",
    ],
}


def request(
    port: int,
    method: str,
    path: str,
    body: dict[str, int] | None = None,
) -> tuple[int, object]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, path, body=data, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        conn.close()


@contextmanager
def serve(django_env: DjangoEnv, server: str, output: Path) -> Iterator[int]:
    port = free_port()
    bind = ["--bind", f"127.0.0.1:{port}"] if server == "gunicorn" else ["--port", str(port)]
    # Django's advice for ASGI: no persistent connections (each request has its own thread).
    env = django_env.env(DJANGOAPP_CONN_MAX_AGE="0" if server == "uvicorn" else "60")
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, *SERVERS[server], *bind],
            cwd=PROJECT,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, output.read_text()
            try:
                if request(port, "GET", "/products/1/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{server} did not come up"
            time.sleep(0.1)
        yield port
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _calls(server: str) -> list[tuple[str, str, dict[str, int] | None, int]]:
    calls: list[tuple[str, str, dict[str, int] | None, int]] = []
    for n in range(1, 25):
        calls.append(("GET", f"/products/{n}/", None, 200))
        calls.append(("POST", "/orders/", {"customer": n, "product": n, "quantity": 1}, 201))
        if server == "uvicorn":
            calls.append(("GET", f"/async/products/{n}/", None, 200))
            calls.append(("POST", "/async/orders/", {"customer": n, "product": n}, 201))
    return calls


@pytest.mark.parametrize("server", sorted(SERVERS))
def test_concurrent_requests_under(server: str, django_env: DjangoEnv, tmp_path: Path) -> None:
    log = django_env.cluster.log_file
    log_offset = log.stat().st_size
    output = tmp_path / f"{server}.log"
    with serve(django_env, server, output) as port, ThreadPoolExecutor(16) as pool:
        calls = _calls(server)
        results = list(pool.map(lambda c: request(port, c[0], c[1], c[2]), calls))
        for (method, path, _, expected), (status, body) in zip(calls, results, strict=True):
            assert status == expected, (method, path, status, body, output.read_text())
            if path == "/async/orders/":
                assert body == {"id": body["id"], "found": True, "lines": 1}  # type: ignore[index]
        status, health = request(port, "GET", "/pgmux/health")
        assert status == 200, health
        assert health["pgmux"][0]["reachable"] is True  # type: ignore[index]
    with log.open("rb") as f:
        f.seek(log_offset)
        text = f.read().decode("utf-8", "replace")
    assert "/*route='products/%3Cint:pk%3E/',view='product-detail'*/" in text
    assert "/*route='orders/',view='order-create'*/" in text
    if server == "uvicorn":
        assert "/*route='async/orders/',view='async-order-create'*/" in text
