"""Every listener bounds request headers: too large is 431, too slow is 408 and a closed
connection, and a normal client is served meanwhile (issue 11, item 8). Real processes, raw
sockets (no HTTP client library would send these requests)."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from tests.ops.conftest import OpsMirrorFactory
from tests.p2p.harness import tracker
from tests.support.net import free_port

pytestmark = pytest.mark.integration  # its tests start their own trackers

HEADER_TIMEOUT = 1.0


def _exchange(host: str, port: int, request: bytes, deadline: float = 10.0) -> tuple[bytes, float]:
    """Send `request`, read until the server closes; the answer and the seconds it took."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=deadline) as sock:
        try:
            sock.sendall(request)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused while we were still sending: the answer is what matters
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
    return answer, time.monotonic() - started


def _slowloris(host: str, port: int, deadline: float = 15.0) -> tuple[bytes, float]:
    """A header byte every 0.2 s, never the end of the headers; returns when the server closes."""
    started = time.monotonic()
    with socket.create_connection((host, port), timeout=deadline) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        sock.settimeout(0.2)
        while time.monotonic() - started < deadline:
            try:
                answer = sock.recv(65536)
                return answer, time.monotonic() - started
            except TimeoutError:
                try:
                    sock.sendall(b"a")
                except OSError:
                    return b"", time.monotonic() - started
            except ConnectionResetError:
                return b"", time.monotonic() - started
    raise AssertionError(f"{host}:{port} kept a slowloris connection open for {deadline} s")


def _big_request(header_bytes: int) -> bytes:
    return b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_bytes + b"\r\n\r\n"


def test_every_mirror_listener_limits_header_size_and_time(ops_mirror: OpsMirrorFactory, tmp_path: Path) -> None:
    peer_port = free_port()
    mirror = ops_mirror(
        f'[limits]\nmax_header_bytes = "32KiB"\nheader_timeout = {HEADER_TIMEOUT}\n'
        f'[p2p]\ntracker = "embedded"\npeer_listen = "127.0.0.1:{peer_port}"\n'
    )
    listeners = {"main": mirror.port, "admin": mirror.admin_port, "peer": peer_port}
    for name, port in listeners.items():
        answer, took = _exchange("127.0.0.1", port, _big_request(64 << 20))
        assert answer.startswith(b"HTTP/1.1 431 "), (name, answer[:100])
        assert took < 5, (name, took)
        answer, took = _slowloris("127.0.0.1", port)
        assert answer.startswith(b"HTTP/1.1 408 "), (name, answer[:100])
        assert HEADER_TIMEOUT * 0.9 <= took < HEADER_TIMEOUT + 3, (name, took)
        # A connection that sends nothing at all is closed too.
        silent, took = _exchange("127.0.0.1", port, b"")
        assert silent == b"" and took < HEADER_TIMEOUT + 3, (name, took)
    # Headers within the limit, and ordinary clients, are served as before.
    answer, _ = _exchange(
        "127.0.0.1", mirror.port, _big_request(16 << 10).replace(b"HTTP/1.1\r\n", b"HTTP/1.1\r\nConnection: close\r\n")
    )
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
    assert httpx.get(f"{mirror.url}/healthz").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{peer_port}/tracker/v1/healthz").status_code in (200, 404)
    metrics = httpx.get(f"{mirror.url}/metrics").text
    assert 'registry_mirror_header_limit_refusals_total{listener="peer",reason="too_large"}' in metrics
    assert 'registry_mirror_header_limit_refusals_total{listener="admin",reason="timeout"}' in metrics


def test_tracker_refuses_huge_headers(tmp_path: Path) -> None:
    with tracker(tmp_path) as running:
        host, port = running.url.removeprefix("http://").split(":")
        answer, took = _exchange(host, int(port), _big_request(64 << 20))
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:100]
        assert took < 5
        assert httpx.get(f"{running.url}/metrics").status_code == 200


def test_tracker_caps_connections_per_client_address(tmp_path: Path) -> None:
    """A client address holding its share of connections gets 503 on the next one; another
    address is served meanwhile, and a freed slot is usable again."""
    with tracker(tmp_path, extra=["--max-connections-per-client", "3"]) as running:
        host, port = running.url.removeprefix("http://").split(":")
        held = [socket.create_connection((host, int(port)), timeout=5) for _ in range(3)]
        try:
            # Accepts are FIFO: the server counts all three before it sees the fourth.
            answer, _ = _exchange(host, int(port), b"GET /v1/healthz HTTP/1.1\r\nHost: t\r\n\r\n")
            assert answer.startswith(b"HTTP/1.1 503 "), answer[:100]
            with socket.create_connection((host, int(port)), timeout=5, source_address=("127.0.0.2", 0)) as other:
                other.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                assert other.recv(64).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in held:
                sock.close()
        deadline = time.monotonic() + 5
        while True:  # the server notices the closed connections
            answer, _ = _exchange(host, int(port), b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            if answer.startswith(b"HTTP/1.1 200 ") or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
