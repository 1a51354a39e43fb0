"""Clients that stop reading are cut off after `limits.send_timeout`, on the zero-copy path (a
cached blob) and the copied one (a blob streamed uncached), and let go of their blob; one client
address gets at most `limits.max_connections_per_client` connections; a normal client is served
meanwhile (issue 11, item 9). A real mirror process, a real origin, raw sockets."""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest

from tests.ops.conftest import OpsMirror, OpsMirrorFactory
from tests.registry_mirror.test_e2e_support import metric_total
from tests.support.images import push_blob, write_random_file
from tests.support.origin import OriginRegistry

MiB = 1024 * 1024
SEND_TIMEOUT = 2.0
CAP = 6


@pytest.fixture
def mirror(ops_mirror: OpsMirrorFactory) -> OpsMirror:
    return ops_mirror(
        f'[cache]\nmax_size = "48MiB"\n[limits]\nsend_timeout = {SEND_TIMEOUT}\nmax_connections_per_client = {CAP}\n'
    )


def _stalled_reader(mirror: OpsMirror, path: str) -> socket.socket:
    """A GET whose response the client never reads past the first bytes (a tiny receive window)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", mirror.port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: mirror\r\n\r\n".encode())
    sock.settimeout(10)
    assert sock.recv(1024).startswith(b"HTTP/1.1 200 ")
    return sock


def _wait_metric(mirror: OpsMirror, name: str, at_least: float, deadline: float) -> float:
    started = time.monotonic()
    while True:
        value = metric_total(httpx.get(f"{mirror.url}/metrics").text, name)
        if value >= at_least or time.monotonic() - started > deadline:
            return value
        time.sleep(0.1)


def _blob(origin: OriginRegistry, tmp_path: Path, size: int, seed: str) -> str:
    return push_blob(origin, "test/stall", write_random_file(tmp_path / f"{seed}.bin", size, seed))


@pytest.mark.parametrize("case", ["cached (sendfile)", "uncached (copied)"])
def test_a_stalled_reader_is_cut_off_and_others_are_served(
    mirror: OpsMirror, origin: OriginRegistry, tmp_path: Path, case: str
) -> None:
    cached = case.startswith("cached")
    size = 32 * MiB if cached else 64 * MiB  # the uncached one exceeds 90% of max_size
    digest = _blob(origin, tmp_path, size, case.split()[0])
    path = f"/v2/test/stall/blobs/{digest}?ns={origin.host}"
    if cached:
        assert len(httpx.get(f"{mirror.url}{path}", timeout=60).content) == size
    started = time.monotonic()
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(_stalled_reader(mirror, path))
        fetched = time.monotonic()
        body = httpx.get(f"{mirror.url}{path}", timeout=60).content
        assert len(body) == size
        assert time.monotonic() - fetched < 10  # not held back by the stalled ones
        stalled = _wait_metric(mirror, "registry_mirror_stalled_clients_total", 3, SEND_TIMEOUT + 8)
        assert stalled >= 3, f"stalled readers still connected after {time.monotonic() - started:.1f} s"
    if cached:  # nothing holds the blob any more: it can be evicted
        evicted = httpx.delete(f"{mirror.admin_url}/admin/cache/{digest}")
        assert evicted.status_code == 200, evicted.text


def test_one_client_address_gets_at_most_the_cap(mirror: OpsMirror) -> None:
    with ExitStack() as stack:
        idle = [stack.enter_context(socket.create_connection(("127.0.0.1", mirror.port))) for _ in range(CAP)]
        with socket.create_connection(("127.0.0.1", mirror.port), timeout=5) as refused:
            assert refused.recv(1024).startswith(b"HTTP/1.1 503 ")
        idle.pop().close()
        deadline = time.monotonic() + 5
        while True:  # the server notices the closed connection within a moment
            try:
                assert httpx.get(f"{mirror.url}/healthz", timeout=5).status_code == 200
                break
            except httpx.HTTPError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
    metrics = httpx.get(f"{mirror.url}/metrics").text
    assert 'reason="too_many_connections"' in metrics
