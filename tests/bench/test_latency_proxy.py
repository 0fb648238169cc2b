"""bench/latency.py: what the benchmark's "20 ms RTT" shape relies on. The bytes pass unchanged both ways,
half-closes are passed on, and a request/response exchange takes at least two delays."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from infra.local.stack import REPO_ROOT

DELAY_MS = 50


class Echo(socketserver.StreamRequestHandler):
    """Sends back everything it reads, then closes once the client has half-closed."""

    def handle(self) -> None:
        while chunk := self.request.recv(1 << 16):
            self.request.sendall(chunk)


@pytest.fixture(scope="module")
def proxied_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    upstream = server.server_address[1]
    proxy = subprocess.Popen(
        [sys.executable, "-m", "bench.latency", "--delay-ms", str(DELAY_MS), str(upstream)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    try:
        assert proxy.stdout is not None
        yield int(json.loads(proxy.stdout.readline())[str(upstream)])
    finally:
        os.killpg(proxy.pid, 15)
        proxy.wait(10)
        server.shutdown()
        server.server_close()


def exchange(port: int, data: bytes) -> tuple[bytes, float]:
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as connection:

        def send() -> None:
            connection.sendall(data)
            connection.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send)
        sender.start()
        received = bytearray()
        while chunk := connection.recv(1 << 20):
            received += chunk
        sender.join()
    return bytes(received), time.monotonic() - started


def test_bytes_pass_unchanged_both_ways(proxied_port: int) -> None:
    data = os.urandom(20 * 1024 * 1024 + 7)

    received, _ = exchange(proxied_port, data)

    assert received == data


def test_a_round_trip_takes_at_least_two_delays(proxied_port: int) -> None:
    _, seconds = exchange(proxied_port, b"ping")

    assert seconds >= 2 * DELAY_MS / 1000
