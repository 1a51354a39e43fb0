"""An origin body closed while a fill's receiving thread is inside `readinto` (the fill failed or
was cancelled while the origin was slow or stalled): the close runs on the event loop and must not
wait for that read. A raw socket server plays the stalled origin; the connection comes from the
real pool."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from nvme_cache.connections import ConnectionPool, Target
from registry_mirror.upstream._ranges import OriginBody

READ_TIMEOUT = 5.0
_WAITING_SYSCALLS = {"7", "45", "271"}  # poll, recvfrom, ppoll
SIZE = 10_000_000


@pytest.fixture
def stalled_origin() -> Iterator[int]:
    """Answers one Range request with its headers and 4 KiB of the body, then sends nothing more
    (the connection stays open)."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def serve() -> None:
        client, _ = server.accept()
        with client:
            client.recv(65536)
            client.sendall(
                f"HTTP/1.1 206 Partial Content\r\nContent-Range: bytes 0-{SIZE - 1}/{SIZE}\r\n"
                f"Content-Length: {SIZE}\r\n\r\n".encode()
                + b"x" * 4096
            )
            done.wait(2 * READ_TIMEOUT)

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        server.close()


def _waits_in_the_kernel(thread: threading.Thread) -> bool:
    """Whether `thread` sits in poll or recvfrom (x86-64 numbers), waiting for the origin's bytes."""
    deadline = time.monotonic() + READ_TIMEOUT
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            if Path(f"/proc/self/task/{thread.native_id}/syscall").read_text().split()[0] in _WAITING_SYSCALLS:
                return True
        time.sleep(0.01)
    return False


def test_closing_a_body_mid_read_does_not_wait_for_the_read(stalled_origin: int) -> None:
    target = Target.of(f"http://127.0.0.1:{stalled_origin}/")
    pool = ConnectionPool(None, connect_timeout=READ_TIMEOUT, read_timeout=READ_TIMEOUT)
    connection = pool.take(target)
    connection.request("GET", "/blob", headers={"Range": "bytes=0-"})
    response = connection.getresponse()
    body = OriginBody(response, connection, target, pool, None)
    assert body.ranged and body.total == SIZE
    outcome: list[object] = []

    def receive() -> None:  # a fill's receiving thread, asking for a 256 KiB chunk
        try:
            outcome.append(body.readinto(memoryview(bytearray(256 * 1024))))
        except Exception as exc:  # noqa: BLE001 - what the read ended with is checked below
            outcome.append(exc)

    receiver = threading.Thread(target=receive)
    receiver.start()
    assert _waits_in_the_kernel(receiver), "the receiving thread never reached its blocking read"
    started = time.monotonic()
    body.close()  # what OriginRanges.open's exit does on the event loop when the fill task ends
    took = time.monotonic() - started
    receiver.join(2 * READ_TIMEOUT)
    assert took < 1.0, f"close waited {took:.1f} s for the receiving thread's read"
    assert not receiver.is_alive() and len(outcome) == 1  # the read ended too, with bytes or an error
