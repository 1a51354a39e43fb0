"""Peers vanish from lookups once they stop heartbeating; a returning peer starts empty."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from p2p.tracker.models import BlobState, PeerInfo
from p2p.tracker_client import TrackerClient
from tests.p2p.conftest import new_digest
from tests.p2p.harness import TOKEN, tracker
from tests.support.procs import starts_processes
from tests.support.waits import eventually

PEER_TTL = 2.0  # long enough that the first lookup comes before it runs out, even on a loaded machine


@pytest.fixture(scope="module", params=["memory", "redis"])
@starts_processes
def short_ttl_tracker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    store = request.getfixturevalue("redis_url") if request.param == "redis" else None
    # A long sweep interval: the session check, not a sweep, must hide the stale pieces.
    extra = ["--peer-ttl", str(PEER_TTL), "--sweep-interval", "600"]
    with tracker(tmp_path_factory.mktemp("short-ttl"), store=store, extra=extra) as running:
        yield running.url


async def test_silent_peer_expires_and_returns_empty(short_ttl_tracker: str) -> None:
    looked_up, untouched = new_digest(), new_digest()
    node = PeerInfo("silent", "http://127.0.0.1:9100", "z1")
    async with TrackerClient(short_ttl_tracker, TOKEN) as client:
        blobs = [BlobState(d, 1024, 64 * 1024, complete=True) for d in (looked_up, untouched)]
        await client.announce(node, blobs)
        assert [h.peer.id for h in await client.peers(looked_up)] == ["silent"]
        # The session runs out on the tracker's clock (another process, or Redis): wait for it.
        await eventually(
            lambda: client.peers(looked_up),
            lambda holders: holders == [],
            "the silent peer expiring",
            timeout=PEER_TTL + 15,
        )
        assert await client.peers(looked_up) == []
        # Coming back with a heartbeat alone does not revive what it announced before.
        assert await client.heartbeat(node) is False
        assert await client.peers(untouched) == []
        assert (await client.stats())["peers"] == 1
