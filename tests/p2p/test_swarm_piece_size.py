"""One holder announcing another piece size, ranked first by the tracker (load 0), must not decide
the downloader's piece size: the seed's published hashes (of the real piece size) would then go
unused, every honest holder be skipped as "another piece size", and the download leave the swarm
for the origin. A real tracker process, a real peer answering Range requests over HTTP."""

from __future__ import annotations

import contextlib
import hashlib
import http.server
import os
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from p2p.config import P2PConfig
from p2p.node import P2PNode
from p2p.pieces import piece_digest, piece_hash_state
from p2p.swarm import SwarmStream
from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.harness import TOKEN

pytestmark = pytest.mark.integration

PIECE = 64 * 1024
BLOB = os.urandom(5 * PIECE + 1234)  # a short last piece
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


class _Ranges(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802
        first, last = self.headers["Range"].removeprefix("bytes=").split("-")
        start, end = int(first), int(last) + 1
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{end - 1}/{len(BLOB)}")
        self.send_header("Content-Length", str(end - start))
        self.end_headers()
        self.wfile.write(BLOB[start:end])

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def honest_peer() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Ranges)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


class _Store:
    """What SwarmStream.aclose -> P2PNode._settle asks of the store."""

    def inflight(self, digest: object) -> None:
        return None

    def stat(self, digest: object) -> object:
        return object()


async def test_a_holder_with_another_piece_size_does_not_cut_the_download_off_its_hashes(
    memory_tracker_url: str, honest_peer: str
) -> None:
    async with TrackerClient(memory_tracker_url, TOKEN) as client:
        assert (await client.lease(DIGEST, "seed", 60)).granted
        hashes = {}
        for index in range(-(-len(BLOB) // PIECE)):
            state = piece_hash_state()
            state.update(BLOB[index * PIECE : (index + 1) * PIECE])
            hashes[index] = piece_digest(state)
        await client.put_pieces(DIGEST, "seed", PIECE, hashes, size=len(BLOB))
        await client.announce(PeerInfo("seed", honest_peer, load=1.0), [BlobState(DIGEST, len(BLOB), PIECE, True)])
        # Complete, the right size, another piece size, and idle: the tracker offers it first.
        await client.announce(
            PeerInfo("other-piece-size", honest_peer, load=0.0), [BlobState(DIGEST, len(BLOB), 2 * PIECE, True)]
        )

    origin_used = []

    @contextlib.asynccontextmanager
    async def origin(offset: int = 0) -> AsyncIterator[Any]:
        origin_used.append(offset)

        class Stream:
            size = len(BLOB) - offset

            async def __aiter__(self) -> AsyncIterator[bytes]:
                yield BLOB[offset:]

        yield Stream()

    config = P2PConfig(
        peer_id="downloader",
        advertise_url="http://127.0.0.1:1",
        tracker_url=memory_tracker_url,
        tracker_token=TOKEN,
        piece_size=PIECE,
        stall_timeout=2.0,
    )
    node = P2PNode(config, _Store())  # type: ignore[arg-type]
    try:
        stream = SwarmStream(node, DIGEST, origin, size_hint=len(BLOB))
        await stream.open()
        received = bytearray()
        async for chunk in stream:
            received += chunk  # buffers: the stream was given no file to land in
            stream.release(chunk)
        await stream.aclose(False)
        assert bytes(received) == BLOB
        assert origin_used == [], f"left the swarm for the origin at {origin_used}"
    finally:
        await node.aclose()
