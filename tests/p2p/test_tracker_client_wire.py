"""The tracker client against tracker answers no well-behaved tracker gives: a kept-alive
connection closed under a request, an answer too big to hold, a redirect, a body that is not JSON.

The far end is a small asyncio HTTP/1.1 server on loopback, written here because what it does (drop
a connection after reading a request, announce a 17 MiB body) is what no real server does on cue.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import pytest

from p2p.errors import TrackerError
from p2p.tracker.models import PeerInfo
from p2p.tracker_client import MAX_ANSWER_BYTES, TrackerClient
from tests.support.rawhttp import RawServer, read_request, trickle

Answer = Callable[[int, int], bytes | None]  # (connection number, request number on it) -> raw answer, None: hang up


def _json(status: int, payload: object, extra: str = "") -> bytes:
    body = json.dumps(payload).encode()
    head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


PEERS = _json(200, {"peers": []})


@asynccontextmanager
async def wire_server(answer: Answer) -> AsyncIterator[tuple[str, list[int]]]:
    """A server that answers each request as `answer` says; yields its URL and, per connection,
    how many requests it read."""
    requests: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = len(requests)
        requests.append(0)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.split(b"\r\n")
                        if line.lower().startswith(b"content-length")
                    ),
                    0,
                )
                await reader.readexactly(length)
                requests[number] += 1
                raw = answer(number, requests[number])
                if raw is None:
                    break
                writer.write(raw)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", requests
    finally:
        server.close()
        await server.wait_closed()


KNOWN = _json(200, {"known": True})
PEER = PeerInfo("node-a", "http://127.0.0.1:9400")


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_request_on_a_connection_the_server_closed_is_sent_again(method: str) -> None:
    # The first connection answers once, then hangs up on the second request without a word:
    # what a request meets when it reuses a connection the tracker closed for idleness.
    answer = PEERS if method == "GET" else KNOWN
    async with wire_server(lambda conn, n: answer if (conn, n) != (0, 2) else None) as (url, requests):
        async with TrackerClient(url, None) as client:
            for _ in range(2):
                if method == "GET":
                    assert await client.peers("sha256:" + "a" * 64) == []
                else:
                    assert await client.heartbeat(PEER)
    assert requests == [2, 1]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_a_tracker_that_keeps_hanging_up_is_a_tracker_error(method: str) -> None:
    answer = PEERS if method == "GET" else KNOWN
    async with wire_server(lambda conn, n: answer if conn == 0 and n == 1 else None) as (url, requests):
        async with TrackerClient(url, None) as client:
            call = (lambda: client.peers("sha256:" + "a" * 64)) if method == "GET" else (lambda: client.heartbeat(PEER))
            await call()
            with pytest.raises(TrackerError) as failed:
                await call()
    assert failed.value.status is None and "ServerDisconnected" in str(failed.value)
    assert requests == [2, 1]  # sent once more, never a third time


async def test_an_answer_that_is_not_the_trackers_is_a_tracker_error() -> None:
    html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 6\r\n\r\n<html>"
    answers = [html, _json(200, {"peers": [{"peer": {}}]}), _json(200, ["not", "an", "object"])]
    async with wire_server(lambda conn, n: answers[(n - 1) % 3]) as (url, _):
        async with TrackerClient(url, None) as client:
            for _ in answers:
                with pytest.raises(TrackerError, match=r"^peers: malformed answer"):
                    await client.peers("sha256:" + "a" * 64)


async def test_an_answer_bigger_than_the_cap_is_not_read() -> None:
    announced = MAX_ANSWER_BYTES + 1024 * 1024
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {announced}\r\n\r\n"
    huge = head.encode() + b'{"peers": [' + b" " * (announced - 13) + b"]}"
    async with wire_server(lambda conn, n: huge) as (url, _):
        async with TrackerClient(url, None) as client:
            with pytest.raises(TrackerError, match="larger than"):
                await client.peers("sha256:" + "a" * 64)


async def test_a_redirect_is_not_followed() -> None:
    moved = b"HTTP/1.1 307 Moved\r\nLocation: http://127.0.0.1:9/v1/stats\r\nContent-Length: 0\r\n\r\n"
    async with wire_server(lambda conn, n: moved) as (url, requests):
        async with TrackerClient(url, None) as client:
            with pytest.raises(TrackerError) as failed:
                await client.stats()
    assert failed.value.status == 307 and requests == [1]


async def test_an_error_answer_names_its_field_and_a_non_json_one_its_reason() -> None:
    refused = _json(400, {"error": "bad digest", "field": "digest"})
    plain = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/html\r\nContent-Length: 5\r\n\r\n<html"
    async with wire_server(lambda conn, n: refused if n == 1 else plain) as (url, _):
        async with TrackerClient(url, None) as client:
            with pytest.raises(TrackerError) as first:
                await client.stats()
            with pytest.raises(TrackerError) as second:
                await client.stats()
    assert (first.value.status, first.value.field, first.value.message) == (400, "digest", "stats: bad digest")
    assert (second.value.status, second.value.field, second.value.message) == (502, None, "stats: Bad Gateway")


@pytest.fixture
def trickling_tracker() -> Iterator[RawServer]:
    """Answers with a head that promises 1 MB, then one byte every 0.3 s (JSON allows the spaces)."""
    holder: dict[str, RawServer] = {}

    def handle(conn: socket.socket) -> None:
        read_request(conn)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n"
        trickle(conn, holder["server"], head, every=0.3)

    server = holder["server"] = RawServer(handle)
    yield server
    server.close()


async def test_a_trickling_tracker_answer_is_a_tracker_error_not_a_hang(trickling_tracker: RawServer) -> None:
    """The read timeout restarts with every byte: only a limit on the whole request frees the fills
    that wait on this lookup (and sends them to the origin)."""
    client = TrackerClient(trickling_tracker.url, None, timeout=1.0)
    started = time.monotonic()
    try:
        with pytest.raises(TrackerError):
            await asyncio.wait_for(client.peers("sha256:" + "ab" * 32), timeout=15)
    finally:
        await client.aclose()
    assert time.monotonic() - started < 10
