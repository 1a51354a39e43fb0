"""The piece client against peers that misbehave on the wire, and its connections' lifetime: a peer
trickling a piece is given up at the piece deadline, a run cancelled while it still waits for a
receiving thread closes the descriptor it was given, idle keep-alive connections are closed.

Peers here are a raw socket server (tests/support/rawhttp.py) and the standard library's HTTP
server answering Range requests: what they do (trickle a byte at a time) is what no real peer does
on cue."""

from __future__ import annotations

import asyncio
import http.client
import os
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from nvme_cache.connections import ConnectionPool, Target
from p2p.config import P2PConfig
from p2p.errors import PieceError
from p2p.node import P2PNode
from p2p.piece_client import Abort, Buffers, Landing, PieceClient, Run, WantedPiece
from p2p.pieces import piece_digest, piece_hash_state
from tests.support.rawhttp import RawServer, range_server, read_request, trickle

DIGEST = "sha256:" + "cd" * 32
PIECE = 64 * 1024
STALL = 1.0  # the socket timeout: a piece may take 4x that at most
UNCHECKED = "blake3:" + "00" * 32  # these peers never get as far as a hash check


@pytest.fixture
def slowloris_peer() -> Iterator[RawServer]:
    """Answers a piece's Range with its head, then one byte every 0.2 s: well inside the socket
    timeout, so no single read ever times out."""
    holder: dict[str, RawServer] = {}

    def handle(conn: socket.socket) -> None:
        read_request(conn)
        head = (
            b"HTTP/1.1 206 Partial Content\r\nContent-Type: application/octet-stream\r\n"
            + f"Content-Range: bytes 0-{PIECE - 1}/{PIECE}\r\nContent-Length: {PIECE}\r\n\r\n".encode()
        )
        trickle(conn, holder["server"], head, every=0.2, byte=b"x")

    server = holder["server"] = RawServer(handle)
    yield server
    server.close()


@pytest.mark.parametrize("landing", [False, True], ids=["into-buffers", "landed-in-the-file"])
def test_a_trickling_peer_is_given_up_at_the_piece_deadline(
    slowloris_peer: RawServer, tmp_path: Path, landing: bool
) -> None:
    client = PieceClient(None, None, STALL)
    abort = Abort()
    land = Landing(os.open(tmp_path / "fill", os.O_RDWR | os.O_CREAT, 0o644), threading.Lock()) if landing else None
    result: list[Run] = []
    wanted = [WantedPiece(0, 0, PIECE, UNCHECKED)]
    thread = threading.Thread(
        target=lambda: result.append(client.fetch(slowloris_peer.url, DIGEST, wanted, Buffers(PIECE, 2), abort, land))
    )
    started = time.monotonic()
    thread.start()
    thread.join(4 * STALL + 4)
    hung = thread.is_alive()
    abort()  # frees the thread either way, so the test leaves none behind
    thread.join(5)
    client.close()
    assert not hung, f"still receiving the trickled piece after {time.monotonic() - started:.1f} s"
    assert isinstance(result[0].error, TimeoutError), result[0].error


def _descriptors_of(path: Path) -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            continue
        count += target.startswith(str(path))
    return count


async def test_a_run_cancelled_before_its_thread_started_closes_its_descriptor(tmp_path: Path) -> None:
    """Every receiving thread is busy (here: the only one); the download stalls and leaves the swarm
    while its run still waits in the queue. The descriptor of the fill's temp file made for that run
    must be closed: the fill unlinks the file, and an open descriptor would keep its blocks."""
    config = P2PConfig(peer_id="me", advertise_url="http://127.0.0.1:1", tracker_url="http://127.0.0.1:1")
    node = P2PNode(config, store=None)  # type: ignore[arg-type]  # fetch_run needs no store
    node.piece_threads.shutdown()
    node.piece_threads = ThreadPoolExecutor(max_workers=1)
    busy = threading.Event()
    node.piece_threads.submit(busy.wait, 10)  # a run on a slow peer holds the thread
    temp = tmp_path / "fill.tmp"
    land = Landing(os.open(temp, os.O_RDWR | os.O_CREAT, 0o644), threading.Lock())
    wanted = [WantedPiece(0, 0, PIECE, UNCHECKED)]
    try:
        run = asyncio.get_running_loop().create_task(
            node.fetch_run("http://127.0.0.1:1", DIGEST, wanted, Buffers(PIECE, 2), land)
        )
        while not node.piece_threads._work_queue.qsize():  # queued behind the busy thread
            await asyncio.sleep(0.01)
        run.cancel()
        await asyncio.gather(run, return_exceptions=True)
        busy.set()
        node.piece_threads.shutdown(wait=True)
        land.close()  # the stream's own descriptor (SwarmStream.aclose -> land_in(None))
        os.unlink(temp)  # the fill's cleanup
        assert _descriptors_of(temp) == 0, "the cancelled run's descriptor is still open"
    finally:
        busy.set()
        node._pieces.close()


@pytest.fixture
def keep_alive_peer() -> Iterator[Target]:
    with range_server(b"ok") as url:
        host, port = url.removeprefix("http://").split(":")
        yield Target("http", host, int(port))


def _used(pool: ConnectionPool, target: Target) -> http.client.HTTPConnection:
    connection = pool.take(target)
    connection.request("GET", "/", headers={"Range": "bytes=0-1"})
    assert connection.getresponse().read() == b"ok"
    pool.give_back(target, connection)
    return connection


def test_idle_connections_are_closed_and_fresh_ones_kept(keep_alive_peer: Target) -> None:
    """Without a limit, every peer (or origin address) ever used would keep up to 16 descriptors
    open for the life of the process, as nodes come and go."""
    now = [1000.0]
    pool = ConnectionPool(None, STALL, STALL, clock=lambda: now[0])
    try:
        idle = _used(pool, keep_alive_peer)
        now[0] += 3.0
        assert pool.take(keep_alive_peer) is idle and idle.sock is not None  # idle 3 s: still reused
        pool.give_back(keep_alive_peer, idle)
        now[0] += 5.0  # past the idle limit (uvicorn closes its side at 5 s)
        other = pool.take(Target("http", "127.0.0.1", 1))  # a take for any host closes it
        other.close()
        assert idle.sock is None
        assert pool.take(keep_alive_peer) is not idle
    finally:
        pool.close()


def test_a_run_given_up_before_its_connection_existed_fetches_nothing() -> None:
    """The loop gives a run up while its thread is still connecting: there is no socket to shut
    down yet, and http.client connects again on the request. The run must stop before a piece."""
    data = os.urandom(PIECE)
    state = piece_hash_state()
    state.update(data)
    wanted = [WantedPiece(0, 0, PIECE, piece_digest(state))]
    client = PieceClient(None, None, STALL)
    try:
        with range_server(data) as url:
            abort = Abort()
            abort()
            run = client.fetch(url, DIGEST, wanted, Buffers(PIECE, 2), abort)
            assert run.pieces == [] and isinstance(run.error, PieceError), run
            # The same peer, asked by a run nobody gave up, answers: the stop above was the abort's.
            good = client.fetch(url, DIGEST, wanted, Buffers(PIECE, 2), Abort())
            assert good.error is None and len(good.pieces) == 1
    finally:
        client.close()
