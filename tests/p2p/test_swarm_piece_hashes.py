"""The download's piece hashes against holders and seeds that disagree with them: one holder
announcing another piece size, ranked first by the tracker, must not decide the piece size (the
seed's published hashes would go unused, every honest holder be skipped, and the download leave the
swarm for the origin); hashes a seed replaces under a running download are no evidence against the
peer whose piece failed them. A real tracker process, a real peer answering Range requests."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from typing import Any

import pytest

from p2p.config import P2PConfig
from p2p.node import P2PNode
from p2p.pieces import piece_digest, piece_hash_state
from p2p.swarm import SwarmStream
from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.harness import TOKEN
from tests.support.rawhttp import range_server

pytestmark = pytest.mark.integration

PIECE = 64 * 1024
Peer = Callable[[bytes, Callable[[], None] | None], str]  # (blob, before its first answer) -> URL


def _digest(blob: bytes) -> str:
    return "sha256:" + hashlib.sha256(blob).hexdigest()


def _hashes(blob: bytes) -> dict[int, str]:
    hashes = {}
    for index in range(-(-len(blob) // PIECE)):
        state = piece_hash_state()
        state.update(blob[index * PIECE : (index + 1) * PIECE])
        hashes[index] = piece_digest(state)
    return hashes


@pytest.fixture
def honest_peer() -> Iterator[Peer]:
    """Starts peers that answer Range requests of `blob` (tests/support/rawhttp.py)."""
    with ExitStack() as servers:
        yield lambda blob, first: servers.enter_context(range_server(blob, first))


class _Store:
    """What SwarmStream.aclose -> P2PNode._settle asks of the store."""

    def inflight(self, digest: object) -> None:
        return None

    def stat(self, digest: object) -> object:
        return object()


async def _download(tracker_url: str, blob: bytes) -> tuple[bytes, list[int], SwarmStream]:
    """The blob through a SwarmStream of a new node: its bytes, the offsets it asked the origin
    from (none: all from peers), and the stream."""
    origin_used: list[int] = []

    @contextlib.asynccontextmanager
    async def origin(offset: int = 0) -> AsyncIterator[Any]:
        origin_used.append(offset)

        class Stream:
            size = len(blob) - offset

            async def __aiter__(self) -> AsyncIterator[bytes]:
                yield blob[offset:]

        yield Stream()

    config = P2PConfig(
        peer_id="downloader",
        advertise_url="http://127.0.0.1:1",
        tracker_url=tracker_url,
        tracker_token=TOKEN,
        piece_size=PIECE,
        stall_timeout=2.0,
    )
    node = P2PNode(config, _Store())  # type: ignore[arg-type]
    try:
        stream = SwarmStream(node, _digest(blob), origin, size_hint=len(blob))
        await stream.open()
        received = bytearray()
        async for chunk in stream:
            received += chunk  # buffers: the stream was given no file to land in
            stream.release(chunk)
        await stream.aclose(False)
        return bytes(received), origin_used, stream
    finally:
        await node.aclose()


async def test_a_holder_with_another_piece_size_does_not_cut_the_download_off_its_hashes(
    memory_tracker_url: str, honest_peer: Peer
) -> None:
    blob = os.urandom(5 * PIECE + 1234)  # a short last piece
    digest, url = _digest(blob), honest_peer(blob, None)
    async with TrackerClient(memory_tracker_url, TOKEN) as client:
        assert (await client.lease(digest, "seed", 60)).granted
        await client.put_pieces(digest, "seed", PIECE, _hashes(blob), size=len(blob))
        await client.announce(PeerInfo("seed", url, load=1.0), [BlobState(digest, len(blob), PIECE, True)])
        # Complete, the right size, another piece size, and idle: the tracker offers it first.
        await client.announce(
            PeerInfo("other-piece-size", url, load=0.0), [BlobState(digest, len(blob), 2 * PIECE, True)]
        )
    received, origin_used, _ = await _download(memory_tracker_url, blob)
    assert received == blob
    assert origin_used == [], f"left the swarm for the origin at {origin_used}"


async def test_hashes_replaced_under_a_download_are_no_evidence_against_an_honest_peer(
    memory_tracker_url: str, honest_peer: Peer
) -> None:
    """A first seed published hashes of other bytes (its fetch did not verify) and gave the lease
    up; a takeover seed publishes the right ones while the download still holds the old copy. The
    honest peer's first piece fails that copy: the download must look again, not exclude and report
    the peer (two such reports exclude it cluster-wide), and take the blob from it."""
    blob = os.urandom(6 * PIECE)
    digest = _digest(blob)

    def takeover() -> None:  # on the peer's thread, as the download's first run reaches it
        async def replace() -> None:
            async with TrackerClient(memory_tracker_url, TOKEN) as client:
                assert await client.release(digest, "seed")
                assert (await client.lease(digest, "takeover", 60)).granted
                await client.put_pieces(digest, "takeover", PIECE, _hashes(blob), size=len(blob))

        asyncio.run(replace())

    url = honest_peer(blob, takeover)
    async with TrackerClient(memory_tracker_url, TOKEN) as client:
        assert (await client.lease(digest, "seed", 60)).granted
        await client.put_pieces(digest, "seed", PIECE, _hashes(os.urandom(len(blob))), size=len(blob))
        await client.announce(PeerInfo("honest", url, load=0.0), [BlobState(digest, len(blob), PIECE, True)])
    received, origin_used, stream = await _download(memory_tracker_url, blob)
    assert received == blob
    assert origin_used == [], f"left the swarm for the origin at {origin_used}"
    assert "honest" not in stream._excluded
