"""LiveSegment over real socket pairs: it sends exactly the bytes at its cursor, stops at its limit,
ends on a full socket with the cursor where the bytes stopped, and hands a gone client's error to
the reader. The fill's side of it runs in the end-to-end tests (test_e2e_readalong.py)."""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Iterator

import pytest

from nvme_cache import LiveSegment

DATA = os.urandom(256 * 1024)


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    sender, receiver = socket.socketpair()
    sender.setblocking(False)
    yield sender, receiver
    sender.close()
    receiver.close()


def _push(offset: int, limit: int, sock: socket.socket, offers: Callable[[LiveSegment], None]) -> LiveSegment:
    """A segment pushed to `sock`, the receiving thread's `offers` made in order while it runs."""

    async def run(live: LiveSegment) -> None:
        offers(live)

    segment = LiveSegment(offset, limit, run)
    pushed = asyncio.run(segment.push(sock.fileno()))
    assert pushed == segment.cursor - offset
    return segment


def _drain(sock: socket.socket, count: int) -> bytes:
    got = b""
    while len(got) < count:
        got += sock.recv(count - len(got))
    return got


def test_it_sends_the_bytes_at_its_cursor_and_stops_at_its_limit(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    chunk = memoryview(DATA)
    results: list[bool] = []

    def offers(live: LiveSegment) -> None:
        results.append(live.offer(chunk[4096:8192], 4096))  # not its bytes yet: nothing sent
        results.append(live.offer(chunk[0:4096], 0))  # bytes 1000-4095
        results.append(live.offer(chunk[4096:8192], 4096))  # 4096-4999, then the limit

    segment = _push(1000, 5000, sender, offers)
    assert results == [True, True, False]
    assert segment.ended and segment.cursor == 5000
    assert _drain(receiver, 4000) == DATA[1000:5000]


def test_a_full_socket_ends_it_where_the_bytes_stopped(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    sender.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16 * 1024)  # the reader reads nothing meanwhile
    chunk = memoryview(DATA)
    offset = 0

    def offers(live: LiveSegment) -> None:
        nonlocal offset
        while live.offer(chunk, offset):
            offset += len(chunk)

    segment = _push(0, len(DATA) * 8, sender, offers)
    sent = segment.cursor
    assert 0 < sent < len(DATA) * 8 and segment.ended
    assert _drain(receiver, sent) == (DATA * 8)[:sent]  # the reader goes on from the file at `sent`


def test_a_gone_client_is_the_readers_error(pair: tuple[socket.socket, socket.socket]) -> None:
    sender, receiver = pair
    receiver.close()
    offered: list[bool] = []
    with pytest.raises(OSError):
        _push(0, len(DATA), sender, lambda live: offered.append(live.offer(memoryview(DATA), 0)))
    assert offered == [False]  # ended: the receiving thread drops it


def test_a_declined_segment_pushes_nothing() -> None:
    async def run(live: LiveSegment) -> None:
        raise AssertionError("a declined segment never runs")

    segment = LiveSegment(0, 100, run)
    segment.decline()
    assert not segment.used and segment.cursor == 0
