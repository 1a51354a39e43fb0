"""ZeroCopySender under a real uvicorn server, raw client sockets: a client that takes nothing is
cut off even while copied bytes still wait in the server's write buffer ahead of a zero-copy send,
and a segment written around the page cache is read in at once before `sendfile`."""

from __future__ import annotations

import os
import socket
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from nvme_cache import sendfile as sendfile_module
from nvme_cache.sendfile import EXTENSION, ClientStalled, FileSegment, ZeroCopyMiddleware, ZeroCopySender
from tests.support.net import free_port

STALL_TIMEOUT = 0.5
KiB = 1024
App = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


@contextmanager
def serving(app: App) -> Iterator[int]:
    """`app` behind ZeroCopyMiddleware in a real uvicorn on a free loopback port."""
    port = free_port()
    config = uvicorn.Config(
        ZeroCopyMiddleware(app, STALL_TIMEOUT), host="127.0.0.1", port=port, lifespan="off", log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def file_of(tmp_path: Path) -> Iterator[Callable[[bytes], int]]:
    with ExitStack() as files:

        def make(data: bytes) -> int:
            handle = files.enter_context(tempfile.TemporaryFile(dir=tmp_path))
            handle.write(data)
            handle.flush()
            return handle.fileno()

        yield make


def _request(port: int, receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /blob HTTP/1.1\r\nHost: mirror\r\n\r\n")
    sock.settimeout(10)
    return sock


def test_a_client_that_takes_nothing_is_cut_off_while_copied_bytes_wait_ahead_of_a_zero_copy_send(
    file_of: Callable[[bytes], int],
) -> None:
    copied, segment = 48 * KiB, 256 * KiB
    fd = file_of(os.urandom(segment))
    outcome: dict[str, object] = {}
    ended = threading.Event()

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        sender: ZeroCopySender = scope["extensions"][EXTENSION]
        transport = sender._cycle.transport
        # Small kernel buffers on both ends, so that the copied chunk below (under uvicorn's
        # high-water mark: its send returns) does not all fit: part of it stays in uvicorn's buffer.
        transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * KiB)
        headers = [(b"content-length", str(copied + segment).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"c" * copied, "more_body": True})
        outcome["buffered"] = transport.get_write_buffer_size()
        try:
            await sender.send(FileSegment(fd, 0, segment))
            outcome["end"] = "sent"
        except ClientStalled:
            outcome["end"] = "stalled"
            raise
        finally:
            ended.set()

    with serving(app) as port:
        client = _request(port, receive_buffer=4 * KiB)
        try:
            assert client.recv(64).startswith(b"HTTP/1.1 200 ")  # then it reads nothing more
            assert ended.wait(10 + STALL_TIMEOUT), "the response still waits for a client that reads nothing"
        finally:
            client.close()
    assert outcome["buffered"] > 0  # the case this covers: bytes still in the buffer at the zero-copy send
    assert outcome["end"] == "stalled"


def test_a_segment_written_around_the_page_cache_is_read_in_before_sendfile(
    file_of: Callable[[bytes], int], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(64 * KiB)
    fd = file_of(data)
    read_in: list[tuple[int, int]] = []
    reads_present = sendfile_module.read_present

    def recording(fd: int, offset: int, count: int) -> None:
        read_in.append((offset, count))
        reads_present(fd, offset, count)

    monkeypatch.setattr(sendfile_module, "read_present", recording)

    async def app(scope: MutableMapping[str, Any], receive: Any, send: Any) -> None:
        sender: ZeroCopySender = scope["extensions"][EXTENSION]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"8192")]})
        assert await sender.send(FileSegment(fd, 4 * KiB, 8 * KiB, read_in=True))
        await send({"type": "http.response.body", "body": b""})

    with serving(app) as port:
        client = _request(port)
        try:
            answer = b""
            while not answer.endswith(data[4 * KiB : 12 * KiB]) and (more := client.recv(65536)):
                answer += more
        finally:
            client.close()
    assert answer.split(b"\r\n\r\n", 1)[1] == data[4 * KiB : 12 * KiB]
    assert read_in == [(4 * KiB, 8 * KiB)]
